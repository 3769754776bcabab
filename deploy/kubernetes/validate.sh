#!/usr/bin/env bash
# Validates the Kubernetes manifests for `voxpipe serve`, offline (no cluster needed).
#
#   deploy/kubernetes/validate.sh              # this folder
#   deploy/kubernetes/validate.sh FILE|DIR...  # given manifests, or whole folders
#
# Each YAML file: yamllint (strict), then kubernetes-validate --strict (unknown fields are
# errors) against every version in VOXPIPE_K8S_VERSIONS; kustomization.yaml is yamllint only.
# Each folder, on top: the manifests agree with each other and with the serve.toml they carry
# (selectors, ports, probes, drain budget, public_url host, HPA metric vs adapter rule, Secret
# keys documented in README.md), and `kubectl kustomize` builds it when kubectl is installed.
#
# Tools come from PyPI into a venv at $VOXPIPE_VENV (default ~/.cache/voxpipe/venv-deploy),
# created on first use. Exits non-zero, naming the files, if anything fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${VOXPIPE_VENV:-${HOME:-/tmp}/.cache/voxpipe/venv-deploy}
# Oldest Kubernetes minor still common on managed clusters, and the newest schema bundled.
k8s_versions=${VOXPIPE_K8S_VERSIONS:-1.31.0 1.37.0}
pins="kubernetes-validate==1.37.0 yamllint==1.38.0"
yamllint_config='{extends: default, rules: {line-length: {max: 200}, document-start: disable, comments: {min-spaces-from-content: 1}}}'

# --- tools --------------------------------------------------------------------------------
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null; then flock 9; fi # two test processes may set up at once
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.voxpipe-pins" 2>/dev/null)" != "$pins" ]]; then
    echo "validate.sh: setting up $venv ($pins)" >&2
    "${PYTHON:-python3}" -m venv --clear "$venv"
    # shellcheck disable=SC2086 # $pins is a list of requirements
    "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" >"$venv/.voxpipe-pins"
fi
exec 9>&-

# --- what to check ------------------------------------------------------------------------
files=()
dirs=()
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("$here")
for target in "${targets[@]}"; do
    if [[ -d "$target" ]]; then
        dirs+=("$target")
        while IFS= read -r f; do files+=("$f"); done \
            < <(find "$target" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
    elif [[ -f "$target" ]]; then
        files+=("$target")
    else
        echo "validate.sh: no such file or folder: $target" >&2
        exit 2
    fi
done
if [[ ${#files[@]} -eq 0 ]]; then
    echo "validate.sh: no YAML files in: ${targets[*]}" >&2
    exit 2
fi

failed=()
k_args=()
for v in $k8s_versions; do k_args+=(-k "$v"); done

for f in "${files[@]}"; do
    if ! "$venv/bin/yamllint" --strict -d "$yamllint_config" "$f"; then
        failed+=("$f (yamllint)")
        continue
    fi
    case "$(basename "$f")" in
        kustomization.yaml | kustomization.yml)
            echo "OK   $f (yamllint; not a Kubernetes object)"
            continue
            ;;
    esac
    # kubernetes-validate exits 0 on a kind it has no schema for (only a WARN line) and on an
    # empty file: both count as failures here.
    rc=0
    out=$("$venv/bin/kubernetes-validate" --strict "${k_args[@]}" "$f" 2>&1) || rc=$?
    if [[ $rc -ne 0 ]] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$out" || ! grep -q ' passed for ' <<<"$out"; then
        echo "${out:-ERROR $f holds no Kubernetes object}"
        failed+=("$f (kubernetes-validate --strict)")
    else
        echo "OK   $f ($(grep -c ' passed for ' <<<"$out") resource checks against $k8s_versions)"
    fi
done

# --- folder-wide consistency ----------------------------------------------------------------
for d in "${dirs[@]}"; do
    if [[ ! -f "$d/kustomization.yaml" ]]; then
        echo "SKIP $d: consistency checks (no kustomization.yaml)"
        continue
    fi
    if ! "$venv/bin/python" - "$d" <<'PY'; then
import os
import re
import sys
import tomllib
from urllib.parse import urlparse

import yaml

d = sys.argv[1]
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def load(name):
    path = os.path.join(d, name)
    if not os.path.isfile(path):
        err(name, "missing")
        return []
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def subset(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# The JSON schemas accept any string as a quantity; Kubernetes does not.
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")


def quantity_ok(where, what, value):
    if not QUANTITY.match(str(value)):
        err(where, f"{what} {value!r} is not a Kubernetes quantity")
        return False
    return True


kust = (load("kustomization.yaml") or [{}])[0]
resources = kust.get("resources") or []
not_listed = {"kustomization.yaml", "prometheus-adapter-rules.yaml"}
for f in sorted(os.listdir(d)):
    if f.endswith((".yaml", ".yml")) and f not in resources and f not in not_listed:
        err("kustomization.yaml", f"{f} is not in resources")

objs = {}
for f in resources:
    for o in load(f):
        objs[(o.get("kind"), o.get("metadata", {}).get("name"))] = (f, o)


def get(kind, name="voxpipe"):
    if (kind, name) not in objs:
        err("kustomization.yaml", f"no {kind} {name} among the resources")
        return None, {}
    return objs[(kind, name)]


# Deployment and the serve file it runs
dep_file, dep = get("Deployment")
pod = dep.get("spec", {}).get("template", {})
labels = pod.get("metadata", {}).get("labels", {})
spec = pod.get("spec", {})
if not subset(dep.get("spec", {}).get("selector", {}).get("matchLabels"), labels):
    err(dep_file, "selector does not match the pod template labels")
containers = spec.get("containers") or [{}]
c = next((x for x in containers if x.get("name") == "voxpipe"), containers[0])
cmd = (c.get("command") or []) + (c.get("args") or [])
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
volumes = {v["name"]: v for v in spec.get("volumes", [])}

serve, serve_path, cm_file, cm, cm_mount = {}, None, None, {}, None
if len(cmd) >= 3 and cmd[1] == "serve":
    serve_path = cmd[2]
else:
    err(dep_file, f"command is not `voxpipe serve FILE`: {cmd}")
for path, m in mounts.items():
    vol = volumes.get(m["name"], {})
    if "configMap" in vol and serve_path and serve_path.startswith(path.rstrip("/") + "/"):
        cm_mount = path.rstrip("/")
        cm_file, cm = get("ConfigMap", vol["configMap"]["name"])
if serve_path and cm_mount is None:
    err(dep_file, f"{serve_path} is not on a ConfigMap volume")


def config_file(path, what):
    """The TOML file at `path` inside the container, read from the ConfigMap."""
    if cm_mount is None or not path.startswith(cm_mount + "/"):
        err(cm_file or dep_file, f"{what} {path} is not under the ConfigMap mount {cm_mount}")
        return {}
    key = path[len(cm_mount) + 1:]
    text = cm.get("data", {}).get(key)
    if text is None:
        err(cm_file, f"no data key {key} ({what} {path})")
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(cm_file, f"{key} is not valid TOML: {e}")
        return {}


if serve_path and cm_mount:
    serve = config_file(serve_path, "serve file")
pipelines = []
for p in serve.get("pipelines", []):
    pipelines.append(config_file(p.get("file", ""), f"pipeline {p.get('name')}"))
if serve and not pipelines:
    err(cm_file, "serve.toml declares no [[pipelines]]")

listen_port = int(str(serve.get("listen", ":0")).rsplit(":", 1)[-1] or 0)
if serve and listen_port not in ports.values():
    err(dep_file, f"no containerPort for listen = {serve.get('listen')!r}")
http_port = ports.get("http")
if http_port is None:
    err(dep_file, "no container port named http")


def probe_ok(name, path):
    g = (c.get(name) or {}).get("httpGet") or {}
    if g.get("path") != path or g.get("port") not in ("http", http_port):
        err(dep_file, f"{name} must be httpGet {path} on the http port, found {g}")


probe_ok("readinessProbe", "/readyz")
probe_ok("livenessProbe", "/healthz")

pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
pre_sleep = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" and str(pre[1]).isdigit() else None
if pre_sleep is None:
    err(dep_file, f"preStop must be exec [sleep, N], found {pre}")
drain = max(serve.get("drain", {}).get("timeout_secs", 1800),
            serve.get("limits", {}).get("max_call_secs", 1800))
grace = spec.get("terminationGracePeriodSeconds", 30)
if grace < (pre_sleep or 0) + drain + 10:
    err(dep_file, f"terminationGracePeriodSeconds {grace} < preStop {pre_sleep} s + drain "
        f"{drain} s (max of drain.timeout_secs, limits.max_call_secs) + 10 s margin")

if (spec.get("securityContext") or {}).get("runAsNonRoot") is not True:
    err(dep_file, "pod securityContext.runAsNonRoot must be true")
csc = c.get("securityContext") or {}
if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
    err(dep_file, "container needs readOnlyRootFilesystem: true, allowPrivilegeEscalation: false")
res = c.get("resources") or {}
if not res.get("requests") or not res.get("limits"):
    err(dep_file, "container needs resources.requests and resources.limits")
for kind in ("requests", "limits"):
    for key, value in (res.get(kind) or {}).items():
        quantity_ok(dep_file, f"resources.{kind}.{key}", value)
for v in volumes.values():
    if (v.get("emptyDir") or {}).get("sizeLimit") is not None:
        quantity_ok(dep_file, f"volume {v['name']} sizeLimit", v["emptyDir"]["sizeLimit"])
rec = serve.get("recordings_dir")
if rec and (rec.rstrip("/") not in mounts or mounts[rec.rstrip("/")].get("readOnly")):
    err(dep_file, f"recordings_dir {rec} is not a writable volume mount")
ann = pod.get("metadata", {}).get("annotations", {})
if ann.get("prometheus.io/scrape") == "true" and str(ann.get("prometheus.io/port")) != str(http_port):
    err(dep_file, "prometheus.io/port is not the http port")

secret_names = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
secret_names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                 if "secretKeyRef" in (e.get("valueFrom") or {})}
if "voxpipe-secrets" not in secret_names:
    err(dep_file, "the container does not read the Secret voxpipe-secrets")


# Every *_env in the TOML files names a variable that README.md's `kubectl create secret`
# command puts into voxpipe-secrets.
def env_names(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith("_env"):
                yield from ([v] if isinstance(v, str) else v)
            else:
                yield from env_names(v)
    elif isinstance(node, list):
        for v in node:
            yield from env_names(v)


readme = os.path.join(d, "README.md")
documented = set()
if os.path.isfile(readme):
    with open(readme, encoding="utf-8") as fh:
        documented = set(re.findall(r"--from-literal=([A-Z0-9_]+)=", fh.read()))
for name in sorted(set(env_names([serve] + pipelines))):
    if name not in documented:
        err("README.md", f"{name} (named in the TOML files) is not in the `kubectl create secret` command")

# Service, Ingress, HPA, PDB
svc_file, svc = get("Service")
if not subset(svc.get("spec", {}).get("selector"), labels):
    err(svc_file, "selector does not match the pod template labels")
svc_ports = svc.get("spec", {}).get("ports", [])
for p in svc_ports:
    if p.get("targetPort") not in ("http", http_port):
        err(svc_file, f"port {p.get('name')} targets {p.get('targetPort')}, not the http port")

ing_file, ing = get("Ingress")
hosts = set()
for rule in ing.get("spec", {}).get("rules", []):
    hosts.add(rule.get("host"))
    for path in rule.get("http", {}).get("paths", []):
        if path.get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
            err(ing_file, f"pathType {path.get('pathType')!r} is not Exact, Prefix or ImplementationSpecific")
        b = path.get("backend", {}).get("service", {})
        port = b.get("port", {})
        if (("Service", b.get("name")) not in objs
                or not any(port.get("name") == p.get("name") or port.get("number") == p.get("port")
                           for p in svc_ports)):
            err(ing_file, f"backend {b} is not a port of a Service in the resources")
tls_hosts = {h for t in ing.get("spec", {}).get("tls", []) for h in t.get("hosts", [])}
public = urlparse(serve.get("public_url", ""))
if serve and (public.scheme != "https" or public.hostname not in hosts or public.hostname not in tls_hosts):
    err(ing_file, f"public_url {serve.get('public_url')!r} must be https on a host the Ingress "
        "serves with TLS (Twilio signs requests over that URL)")

hpa_file, hpa = get("HorizontalPodAutoscaler")
hs = hpa.get("spec", {})
ref = hs.get("scaleTargetRef", {})
if (ref.get("kind"), ref.get("name")) != ("Deployment", dep.get("metadata", {}).get("name")):
    err(hpa_file, f"scaleTargetRef {ref} is not the Deployment")
if not 1 <= hs.get("minReplicas", 1) <= hs.get("maxReplicas", 0):
    err(hpa_file, "needs 1 <= minReplicas <= maxReplicas")
adapter = load("prometheus-adapter-rules.yaml")
exposed = set()
for o in adapter:
    rules = yaml.safe_load(o.get("data", {}).get("config.yaml", "")) or {}
    for r in rules.get("rules", []):
        exposed.add((r.get("name") or {}).get("as") or r.get("seriesQuery", "").split("{")[0])
for m in hs.get("metrics", []):
    if m.get("type") == "Pods":
        name = m["pods"]["metric"]["name"]
        if name not in exposed:
            err("prometheus-adapter-rules.yaml", f"no rule exposes {name} (used by {hpa_file})")
        avg = m["pods"]["target"].get("averageValue")
        if (quantity_ok(hpa_file, "averageValue", avg) and serve and str(avg).isdigit()
                and int(avg) >= serve.get("limits", {}).get("max_calls", float("inf"))):
            err(hpa_file, f"target {avg} calls per pod is not below limits.max_calls")

pdb_file, pdb = get("PodDisruptionBudget")
if not subset(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), labels):
    err(pdb_file, "selector does not match the pod template labels")

for e in errors:
    print(f"ERROR {e}")
sys.exit(1 if errors else 0)
PY
        failed+=("$d (consistency checks)")
    else
        echo "OK   $d (consistency checks)"
    fi
    if command -v kubectl >/dev/null; then
        if kubectl kustomize "$d" >/dev/null; then
            echo "OK   $d (kubectl kustomize)"
        else
            failed+=("$d (kubectl kustomize)")
        fi
    else
        echo "SKIP $d: kubectl kustomize (kubectl not installed)"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "validate.sh: FAILED:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "validate.sh: all ${#files[@]} files passed"
