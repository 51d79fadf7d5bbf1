//! A posted form: `application/x-www-form-urlencoded`, or
//! `multipart/form-data` with a file (the policy upload).

use bytes::Bytes;

/// The fields of a posted form, in order, and its files.
#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
    files: Vec<File>,
}

/// A file a form carried.
#[derive(Debug)]
pub struct File {
    /// The form field's name.
    pub field: String,
    /// The file's name as the browser gave it.
    pub name: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// Most fields a form may have.
const MAX_FIELDS: usize = 200;

impl Form {
    /// Reads a form body of the given content type.
    pub async fn read(content_type: &str, body: Bytes) -> Result<Form, String> {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        match mime {
            "application/x-www-form-urlencoded" | "" => {
                let fields: Vec<(String, String)> = form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .take(MAX_FIELDS + 1)
                    .collect();
                if fields.len() > MAX_FIELDS {
                    return Err(format!("the form has more than {MAX_FIELDS} fields"));
                }
                Ok(Form {
                    fields,
                    files: Vec::new(),
                })
            }
            "multipart/form-data" => {
                let boundary = multer::parse_boundary(content_type)
                    .map_err(|e| format!("the form's content type: {e}"))?;
                let stream = futures_util::stream::once(std::future::ready(Ok::<
                    _,
                    std::convert::Infallible,
                >(body)));
                let mut multipart = multer::Multipart::new(stream, boundary);
                let mut form = Form::default();
                while let Some(field) = multipart
                    .next_field()
                    .await
                    .map_err(|e| format!("the form cannot be read: {e}"))?
                {
                    if form.fields.len() + form.files.len() >= MAX_FIELDS {
                        return Err(format!("the form has more than {MAX_FIELDS} fields"));
                    }
                    let name = field.name().unwrap_or_default().to_string();
                    match field.file_name().map(str::to_string) {
                        Some(file) => {
                            let bytes = field
                                .bytes()
                                .await
                                .map_err(|e| format!("field {name:?}: {e}"))?;
                            form.files.push(File {
                                field: name,
                                name: file,
                                bytes,
                            });
                        }
                        None => {
                            let text = field
                                .text()
                                .await
                                .map_err(|e| format!("field {name:?}: {e}"))?;
                            form.fields.push((name, text));
                        }
                    }
                }
                Ok(form)
            }
            other => Err(format!(
                "a form is urlencoded or multipart/form-data, not {other:?}"
            )),
        }
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field's value, trimmed, or "" when absent.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default().trim()
    }

    /// Whether a checkbox was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The file of a field, if one was chosen.
    pub fn file(&self, field: &str) -> Option<&File> {
        self.files
            .iter()
            .find(|f| f.field == field && !f.bytes.is_empty())
    }
}

/// A query string of the pairs.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The pairs of a query string.
pub fn decode(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urlencoded_and_multipart() {
        let f = Form::read(
            "application/x-www-form-urlencoded",
            Bytes::from_static(b"csrf=abc&name=a+b%21&active=on"),
        )
        .await
        .unwrap();
        assert_eq!(f.get("csrf"), Some("abc"));
        assert_eq!(f.text("name"), "a b!");
        assert!(f.checked("active"));
        assert!(!f.checked("dvr"));

        let body = "--X\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
            --X\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"p.wasm\"\r\n\
            Content-Type: application/wasm\r\n\r\n\0asm\r\n--X--\r\n";
        let f = Form::read("multipart/form-data; boundary=X", Bytes::from(body))
            .await
            .unwrap();
        assert_eq!(f.get("csrf"), Some("tok"));
        let file = f.file("wasm").unwrap();
        assert_eq!(file.name, "p.wasm");
        assert_eq!(&file.bytes[..], b"\0asm");

        let e = Form::read("text/plain", Bytes::new()).await.unwrap_err();
        assert!(e.contains("text/plain"), "{e}");
        let many = (0..=MAX_FIELDS)
            .map(|i| format!("f{i}=1"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(Form::read("", Bytes::from(many)).await.is_err());
    }
}
