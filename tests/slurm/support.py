"""Helpers for the SLURM tests: the site-adapted profile copy, and evidence from sacct."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import zipfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
REAL_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TEST_OVERLAY = REPO / "tests" / "slurm" / "profile"
SLURM_DIR = Path(os.environ.get("LINEAGE_SLURM_DIR", "/tmp/lineage-slurm"))

# What a user edits in profiles/slurm/config.yaml, set for the test cluster (cluster.sh).
TEST_SITE = {"CPU_PARTITION": "cpu", "GPU_PARTITION": "gpu", "ACCOUNT": "lineage"}
# The rules profiles/slurm sends to a GPU partition (docs/SLURM.md, "How rules are routed":
# extraction, dense dumps, sort-grid training, expert training, the students).
SPEC_GPU_RULES = {"extract_logits", "dump_dense_logits", "train_sort_model", "train_expert", "train_student",
                  "extract_student_format", "train_student_format", "dump_student_dense"}


def site_profile_text(site: dict[str, str], text: str | None = None) -> str:
    """The real profile with its SITE SETTINGS lines set to `site`, nothing else changed.

    This is exactly the edit a user makes for their cluster, so the test runs the real
    profile's routing (default-resources, set-resources), not a test copy of it.
    """
    text = REAL_PROFILE.read_text() if text is None else text
    for name, value in site.items():
        text, count = re.subn(
            rf"^(\s*- {name} = ).*$", lambda m: f"{m.group(1)}{json.dumps(value)}", text, flags=re.M
        )
        if count != 1:
            raise AssertionError(f"{REAL_PROFILE}: expected one '- {name} = ...' line, found {count}")
    return text


def write_site_profile(dest: Path, site: dict[str, str] = TEST_SITE) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(site_profile_text(site))
    return dest


def profile_settings(profile_file: Path) -> dict:
    """The profile as snakemake reads it (yte evaluated, `key=value` lists)."""
    from snakemake.profiles import ProfileConfigFileParser

    with open(profile_file) as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def set_resources(settings: dict) -> dict[str, dict[str, str]]:
    """`set-resources` entries (`rule:name=value`) as {rule: {name: value}}."""
    out: dict[str, dict[str, str]] = {}
    for entry in settings.get("set-resources", []):
        rule, assign = entry.split(":", 1)
        name, value = assign.split("=", 1)
        out.setdefault(rule, {})[name] = value
    return out


def default_resources(settings: dict) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in settings.get("default-resources", []))


def run_id_of(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    if not match:
        raise AssertionError(f"no 'SLURM run ID' in snakemake output:\n{output[-3000:]}")
    return match.group(1)


def submitted_rules(output: str) -> Counter:
    """Jobs snakemake handed to the executor: `rule x:` headers (local jobs print `localrule x:`)."""
    return Counter(re.findall(r"^rule (\w+):$", output, flags=re.M))


def rule_of_comment(comment: str) -> str:
    """The plugin submits with --comment rule_<name>[_wildcards_<values>]."""
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", comment)
    if not match:
        raise AssertionError(f"job comment not written by the snakemake SLURM plugin: {comment!r}")
    return match.group(1)


SACCT_FIELDS = ("JobIDRaw", "JobName", "Partition", "ReqTRES", "AllocTRES", "Account", "State", "Comment")


def sacct_jobs(run_id: str) -> list[dict[str, str]]:
    """Accounting records (one per job, no steps) of one snakemake run: its jobs share the name."""
    since = f"{datetime.now() - timedelta(days=2):%Y-%m-%dT%H:%M}"
    proc = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--name", run_id, "-S", since, "-E", "now",
         "--format", ",".join(SACCT_FIELDS)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(f"sacct failed: {proc.stderr}")
    rows = []
    for line in proc.stdout.splitlines():
        values = line.split("|", len(SACCT_FIELDS) - 1)
        if len(values) == len(SACCT_FIELDS):
            row = dict(zip(SACCT_FIELDS, values))
            row["rule"] = rule_of_comment(row["Comment"])
            rows.append(row)
    return rows


def cluster_status() -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )


def content_digest(path: Path) -> str:
    """A digest of what a file holds, blind to container bytes that carry no data.

    Three formats the chains write put incidental bytes in their containers: a gzip
    header holds the (temporary) file name and mtime; torch.save names the zip's root
    folder after the (temporary) file; safetensors writes `__metadata__` keys in hash
    order. Everything else is compared byte for byte.
    """
    name = path.name
    if name.endswith(".gz"):
        data = gzip.decompress(path.read_bytes())
    elif name.endswith(".safetensors"):
        raw = path.read_bytes()
        size = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + size])
        data = json.dumps(header, sort_keys=True).encode() + raw[8 + size :]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(
                (info.filename.split("/", 1)[-1], archive.read(info)) for info in archive.infolist()
            )
        data = b"".join(hashlib.sha256(n.encode() + b"\0" + b).digest() for n, b in members)
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()
