"""Runs rendered Kubernetes manifests as docker compose services, the way a StatefulSet
would: one container per pod, named and with the hostname of the pod (`strom-broker-2`),
reachable at its stable DNS names through the headless Service
(`strom-broker-2.strom-broker`, `...strom-broker.default.svc`), with the pod's environment
(downward-API fields, the zone label of the node it lands on, and `$(VAR)` references resolved
as the kubelet does), its ConfigMaps
mounted, a volume per claim, the readiness probe as healthcheck, the grace period as the
stop timeout and the preStop hook as a label scripts/rolling-restart.sh runs before a stop. It tests the identity rules and the wiring of the manifests with the real image;
scheduling, PDBs and Services' load balancing are Kubernetes' and are not emulated.

    python scripts/k8s_compose.py RENDERED.yaml OUT_DIR [--namespace default]

Writes OUT_DIR/compose.yml, OUT_DIR/configmaps/..., and OUT_DIR/hosts (an /etc/hosts for a
client on the host that must resolve the pods' names: every pod has a fixed address).
"""

import argparse
import json
import os
import re
import sys

import yaml

SUBNET = "10.213.7"


def resolve_env(container, pod, namespace, labels):
    out, values = {}, {}
    for e in container.get("env", []):
        if "valueFrom" in e:
            ref = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", ref or "")
            if ref == "metadata.name":
                v = pod
            elif ref == "metadata.namespace":
                v = namespace
            elif label:
                # As the kubelet does: an absent label is an empty value.
                v = labels.get(label.group(1), "")
            else:
                print(f"k8s-compose: {e['name']}: only metadata.name/namespace/labels are "
                      f"emulated (skipped)", file=sys.stderr)
                continue
        else:
            v = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), e["value"])
        values[e["name"]] = v
        out[e["name"]] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("out")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--image", default="strom:local")
    ap.add_argument("--zones", default="zone-a,zone-b,zone-c", type=lambda z: z.split(","),
                    help="the zones pods land in, in turn (their topology.kubernetes.io/zone)")
    args = ap.parse_args()
    ns = args.namespace
    docs = [d for d in yaml.safe_load_all(open(args.rendered)) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    os.makedirs(os.path.join(args.out, "configmaps"), exist_ok=True)
    services, volumes, hosts = {}, {}, []
    ip = 10
    for sts in sorted(sets, key=lambda s: s["metadata"]["name"] != "strom-controller"):
        name = sts["metadata"]["name"]
        svc = sts["spec"]["serviceName"]
        tpl = sts["spec"]["template"]["spec"]
        [c] = tpl["containers"]
        for i in range(sts["spec"]["replicas"]):
            pod = f"{name}-{i}"
            # Pods spread over the zones' nodes in turn; their topology label says where.
            labels = {"topology.kubernetes.io/zone": args.zones[i % len(args.zones)]}
            env = resolve_env(c, pod, ns, labels)
            mounts = []
            for m in c.get("volumeMounts", []):
                vol = next((v for v in tpl.get("volumes", []) if v["name"] == m["name"]), None)
                if vol is None:  # a volumeClaimTemplate: one named volume per pod
                    volumes[f"{m['name']}-{pod}"] = {}
                    mounts.append(f"{m['name']}-{pod}:{m['mountPath']}")
                elif "configMap" in vol:
                    cm = configmaps[vol["configMap"]["name"]]
                    d = os.path.join(args.out, "configmaps", vol["configMap"]["name"])
                    os.makedirs(d, exist_ok=True)
                    for fname, text in cm.get("data", {}).items():
                        with open(os.path.join(d, fname), "w") as f:
                            f.write(text)
                    mounts.append(f"{os.path.abspath(d)}:{m['mountPath']}:ro")
                else:
                    sys.exit(f"k8s-compose: volume {m['name']} of {name}: only claims and "
                             f"ConfigMaps are emulated")
            probe = c["readinessProbe"]
            port = probe["httpGet"]["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in c["ports"] if p["name"] == port)
            addr = f"{SUBNET}.{ip}"
            ip += 1
            names = [f"{pod}.{svc}", f"{pod}.{svc}.{ns}.svc", f"{pod}.{svc}.{ns}.svc.cluster.local"]
            hosts.append(f"{addr} {pod} {' '.join(names)}")
            services[pod] = {
                "image": args.image,
                "hostname": pod,
                "entrypoint": list(c["command"]),
                "environment": env,
                "volumes": mounts,
                "stop_grace_period": f"{tpl.get('terminationGracePeriodSeconds', 30)}s",
                "healthcheck": {
                    "test": ["CMD", "wget", "-q", "-O", "/dev/null",
                             f"http://127.0.0.1:{port}{probe['httpGet']['path']}"],
                    "interval": f"{min(probe.get('periodSeconds', 10), 2)}s",
                    "timeout": "2s",
                    "retries": 300,
                },
                "networks": {"pods": {"ipv4_address": addr, "aliases": names}},
                "restart": "no",
            }
            # The preStop hook, for scripts/rolling-restart.sh to run before stopping the
            # container, as the kubelet runs it before SIGTERM.
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
            if pre_stop:
                services[pod]["labels"] = {"io.strom.pre-stop": json.dumps(pre_stop)}
    compose = {
        "version": "2.4",
        "services": services,
        "volumes": volumes,
        "networks": {"pods": {"ipam": {"config": [{"subnet": f"{SUBNET}.0/24"}]}}},
    }
    with open(os.path.join(args.out, "compose.yml"), "w") as f:
        f.write("# Generated by scripts/k8s_compose.py from rendered manifests; do not edit.\n")
        yaml.safe_dump(compose, f, sort_keys=False)
    with open(os.path.join(args.out, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n" + "\n".join(hosts) + "\n")
    print(f"k8s-compose: {len(services)} pods -> {args.out}/compose.yml")


if __name__ == "__main__":
    main()
