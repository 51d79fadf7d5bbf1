// Node module hooks (see register.js): `edgeward:policy/host@...` is the
// stand-in host of ./host.js.
const HOST = new URL("./host.js", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("edgeward:policy/host")) {
    return { url: HOST, shortCircuit: true };
  }
  return next(specifier, context);
}
