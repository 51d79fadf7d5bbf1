#!/usr/bin/env python3
"""From an edgeward topology (JSON), write the equivalent nginx and HAProxy
configurations and the client-address list wrk rotates over.

Equivalent means: the client is X-Real-IP, matched by longest prefix over
the same subnets (IPv4 and IPv6), mapped to the region, then to that
region's first edge; unmatched clients go to the default region; the answer
is a 302 to {edge}/live/ch1/index.m3u8 plus the query string. (edgeward does
more per request: tiers, availability, weighted choice in a sandboxed
policy.)

usage: gen_peers.py TOPOLOGY.json OUT_DIR NGINX_PORT HAPROXY_PORT
"""
import ipaddress
import json
import os
import random
import sys

topology_path, out, nginx_port, haproxy_port = sys.argv[1:5]
topo = json.load(open(topology_path))
os.makedirs(out, exist_ok=True)

servers = {s["id"]: s for s in topo["servers"]}
groups = {g["id"]: g for g in topo["server_groups"]}


def base_url(server):
    host, port = server["host"], server["port"]
    if port == 443:
        return f"https://{host}"
    if port == 80:
        return f"http://{host}"
    return f"http://{host}:{port}"


region_edge = {}
for region in topo["regions"]:
    for gid in region["server_groups"]:
        for sid in groups[gid]["servers"]:
            if servers[sid]["kind"] == "edge":
                region_edge.setdefault(region["id"], base_url(servers[sid]))
default = topo.get("default_region", topo["regions"][0]["id"])

# nginx: geo on $http_x_real_ip, map region -> edge.
with open(f"{out}/nginx.conf", "w") as f:
    f.write(f"""worker_processes 2;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    geo $http_x_real_ip $region {{
        default {default};
        include {out}/nginx-geo.conf;
    }}
    map $region $edge {{
        default "{region_edge[default]}";
        include {out}/nginx-map.conf;
    }}
    server {{
        listen 127.0.0.1:{nginx_port} reuseport backlog=4096;
        location / {{
            return 302 $edge/live/ch1/index.m3u8$is_args$args;
        }}
    }}
}}
""")
with open(f"{out}/nginx-geo.conf", "w") as f:
    for s in topo["subnets"]:
        f.write(f"{ipaddress.ip_network(s['cidr'], strict=False)} {s['region']};\n")
with open(f"{out}/nginx-map.conf", "w") as f:
    for region, edge in region_edge.items():
        f.write(f'{region} "{edge}";\n')

# HAProxy: map_ip (longest prefix) then map (region -> edge).
with open(f"{out}/haproxy-regions.map", "w") as f:
    for s in topo["subnets"]:
        f.write(f"{ipaddress.ip_network(s['cidr'], strict=False)} {s['region']}\n")
with open(f"{out}/haproxy-edges.map", "w") as f:
    for region, edge in region_edge.items():
        f.write(f"{region} {edge}\n")
with open(f"{out}/haproxy.cfg", "w") as f:
    f.write(f"""global
    nbthread 2
    maxconn 8000
    pidfile {out}/haproxy.pid
defaults
    mode http
    timeout client 30s
    timeout connect 5s
    timeout server 30s
    option http-keep-alive
frontend redirect
    bind 127.0.0.1:{haproxy_port}
    http-request redirect code 302 location %[req.hdr(x-real-ip),map_ip({out}/haproxy-regions.map,{default}),map({out}/haproxy-edges.map,{region_edge[default]})]/live/ch1/index.m3u8%[query,regsub(^.+,?\\0)]
""")

# Client addresses: inside random subnets, 3 % unmatched.
rng = random.Random(7)
subnets = [ipaddress.ip_network(s["cidr"], strict=False) for s in topo["subnets"]]
with open(f"{out}/clients.txt", "w") as f:
    for i in range(5000):
        if rng.random() < 0.03:
            f.write(f"192.0.2.{rng.randrange(1, 255)}\n")
            continue
        net = rng.choice(subnets)
        f.write(f"{net.network_address + rng.randrange(0, min(net.num_addresses, 1 << 30))}\n")
