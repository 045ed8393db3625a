"""Checks the invariants of rendered Kubernetes manifests (deploy/kubernetes) that schema
validation cannot: what would make a StatefulSet of Strom nodes misbehave although every
object is well-formed.

    python scripts/k8s_check.py RENDERED.yaml --broker-bin B --quorum-bin Q

- every StatefulSet has a PodDisruptionBudget of at most one pod whose selector matches its
  pods, and a headless Service (publishing not-ready addresses) of its serviceName that
  selects them;
- probes point at endpoints the process serves (/healthz, /readyz) on a port the container
  declares, and that port is the one the process listens on;
- the voters and the brokers' quorum list name exactly the controller pods, by their stable
  DNS names through the headless Service, with node ids equal to the ordinals;
- the advertised Kafka address is <pod>.<headless service>.<namespace>.svc;
- the broker's preStop hook POSTs its own /v1/admin/controlled-shutdown;
- the data directory is the volume claim's mount; the grace period covers a controlled
  shutdown;
- every STROM_* variable is one the binary reads, and every server.properties key maps to a
  broker flag.
"""

import argparse
import re
import subprocess
import sys

import yaml

failures = []

# Kafka's names that the broker maps to flags of other names (broker/src/properties.rs).
KAFKA_NAMES = {"node.id", "broker.id", "log.dirs", "log.dir", "listeners", "advertised.listeners",
               "controller.quorum.bootstrap.servers", "controller.quorum.voters",
               "auto.create.topics.enable"}


def check(ok, what):
    if not ok:
        failures.append(what)


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def known_env(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"env: (STROM_[A-Z0-9_]+)", out)), out


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def probe_target(probe, container):
    """(path or None, container port number) a probe hits."""
    kind = probe.get("httpGet") or probe.get("tcpSocket")
    port = kind["port"]
    if isinstance(port, str):
        named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        check(port in named, f"{container['name']}: probe port {port} is not declared")
        port = named.get(port)
    return (probe.get("httpGet") or {}).get("path"), port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("--broker-bin", required=True)
    ap.add_argument("--quorum-bin", required=True)
    ap.add_argument("--namespace", default="default")
    args = ap.parse_args()
    docs = [d for d in yaml.safe_load_all(open(args.rendered)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sets = {s["metadata"]["name"]: s for s in by_kind.get("StatefulSet", [])}
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    pdbs = by_kind.get("PodDisruptionBudget", [])
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    check({"strom-controller", "strom-broker"} <= set(sets), f"StatefulSets: {sorted(sets)}")
    broker_env_names, broker_help = known_env(args.broker_bin)
    quorum_env_names, _ = known_env(args.quorum_bin)

    for name, sts in sets.items():
        spec = sts["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        selector = spec["selector"]["matchLabels"]
        check(all(pod_labels.get(k) == v for k, v in selector.items()),
              f"{name}: selector {selector} does not match its pod labels")
        matching = [p for p in pdbs if all(pod_labels.get(k) == v for k, v in
                                           p["spec"]["selector"]["matchLabels"].items())]
        check(len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets select its pods")
        for p in matching:
            check(p["spec"].get("maxUnavailable") == 1 and "minAvailable" not in p["spec"],
                  f"{name}: its PDB must allow exactly one pod down")
        svc = services.get(spec["serviceName"])
        check(svc is not None, f"{name}: no Service {spec['serviceName']}")
        if svc:
            check(svc["spec"].get("clusterIP") == "None", f"{name}: its Service is not headless")
            check(svc["spec"].get("publishNotReadyAddresses") is True,
                  f"{name}: its headless Service hides not-ready pods (peers must resolve them)")
            check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
                  f"{name}: its headless Service does not select its pods")
        [container] = spec["template"]["spec"]["containers"]
        env = env_of(container)
        known = broker_env_names if name == "strom-broker" else quorum_env_names
        for var in env:
            if var.startswith("STROM_"):
                check(var in known, f"{name}: {var} is not a variable the binary reads")
        check(env.get("STROM_NODE_ID_FROM_HOSTNAME") == "true",
              f"{name}: node ids must come from the pod ordinal")
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
        check(claims == ["data"], f"{name}: volume claims {claims}")
        check(mounts.get("data") == env.get("STROM_DATA_DIR"),
              f"{name}: STROM_DATA_DIR {env.get('STROM_DATA_DIR')} is not the volume's mount")
        if name == "strom-broker":
            listen_port = port_of(env["STROM_HTTP_LISTEN"])
        else:
            listen_port = port_of(env["STROM_LISTEN"])
        for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            probe = container.get(kind)
            check(probe is not None, f"{name}: no {kind}")
            if probe:
                got_path, got_port = probe_target(probe, container)
                # A TCP probe only where the HTTP port needs a client certificate (mTLS).
                tcp_ok = env.get("STROM_TLS") == "true"
                check(got_path == path or (got_path is None and tcp_ok),
                      f"{name}: {kind} asks {got_path}, not {path}")
                check(got_port == listen_port,
                      f"{name}: {kind} port {got_port} is not the HTTP port {listen_port}")
        ann = spec["template"]["metadata"].get("annotations", {})
        check(ann.get("prometheus.io/scrape") == "true" and
              int(ann.get("prometheus.io/port", 0)) == listen_port,
              f"{name}: Prometheus annotations do not name the HTTP port {listen_port}")

    ctl = sets.get("strom-controller")
    brk = sets.get("strom-broker")
    if ctl and brk:
        n = ctl["spec"]["replicas"]
        svc = ctl["spec"]["serviceName"]
        [c] = ctl["spec"]["template"]["spec"]["containers"]
        port = port_of(env_of(c)["STROM_LISTEN"])
        pods = [f"strom-controller-{i}.{svc}:{port}" for i in range(n)]
        voters = env_of(c)["STROM_VOTERS"].split(",")
        check(voters == [f"{i}@{p}" for i, p in enumerate(pods)],
              f"voters {voters} are not the {n} controller pods {pods}")
        [b] = brk["spec"]["template"]["spec"]["containers"]
        benv = env_of(b)
        check(benv["STROM_QUORUM"].split(",") == pods,
              f"brokers' quorum {benv['STROM_QUORUM']} is not the controller pods {pods}")
        bsvc = brk["spec"]["serviceName"]
        pattern = f"$(POD_NAME).{bsvc}.$(POD_NAMESPACE).svc:"
        advertised = benv.get("STROM_ADVERTISED_KAFKA") or benv.get("STROM_ADVERTISED_LISTENERS")
        check(advertised is not None and all(
            pattern in a for a in str(advertised).split(",")),
            f"advertised {advertised} is not <pod>.{bsvc}.<namespace>.svc")
        fields = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                  for e in b.get("env", [])}
        check(fields.get("POD_NAME") == "metadata.name" and
              fields.get("POD_NAMESPACE") == "metadata.namespace",
              "POD_NAME / POD_NAMESPACE must come from the downward API")
        check(fields.get("STROM_BROKER_RACK") == "metadata.labels['topology.kubernetes.io/zone']",
              "the broker's rack must come from its zone label through the downward API")
        defined = set()
        for e in b["env"]:
            for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
                check(ref in defined, f"{e['name']} uses $({ref}) before it is defined "
                                      f"(the kubelet would leave it unexpanded)")
            defined.add(e["name"])
        grace = brk["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        props = {}
        for cm in configmaps.values():
            text = cm.get("data", {}).get("server.properties")
            if text:
                for line in text.splitlines():
                    line = line.strip()
                    if line and not line.startswith("#"):
                        k, v = line.split("=", 1)
                        props[k.strip()] = v.strip()
        timeout_ms = int(benv.get("STROM_CONTROLLED_SHUTDOWN_TIMEOUT_MS") or
                         props.get("controlled.shutdown.timeout.ms", 30000))
        check(grace * 1000 > timeout_ms + 5000,
              f"terminationGracePeriodSeconds {grace} does not cover a controlled shutdown "
              f"of {timeout_ms} ms")
        # The preStop hook triggers the controlled shutdown on the broker's own HTTP port.
        hook = b.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        http_port = port_of(benv["STROM_HTTP_LISTEN"])
        check(any(f"127.0.0.1:{http_port}/v1/admin/controlled-shutdown" in a for a in hook)
              and "--post-data" in hook,
              f"the broker's preStop hook {hook} does not POST /v1/admin/controlled-shutdown "
              f"on its HTTP port {http_port}")
        for k in props:
            flag = "--" + k.replace(".", "-")
            check(flag in broker_help or k in KAFKA_NAMES,
                  f"server.properties: {k} is not a broker setting")

    if failures:
        for f in failures:
            print(f"k8s-check: {args.rendered}: {f}", file=sys.stderr)
        sys.exit(1)
    print(f"k8s-check: {args.rendered}: {len(docs)} objects, invariants hold")


if __name__ == "__main__":
    main()
