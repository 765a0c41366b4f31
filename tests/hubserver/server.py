"""The part of the Hugging Face Hub's HTTP API that huggingface_hub 2.4.0 uses to publish.

Endpoints (as the client calls them; `{t}` is model/dataset/space, `{repo}` is ns/name):

    POST /api/repos/create                          create_repo (409 + url when it exists)
    GET  /api/{t}s/{repo}[/revision/{rev}]          repo_info / dataset_info
    POST /api/{t}s/{repo}/branch/{branch}           create_branch
    POST /api/{t}s/{repo}/preupload/{rev}           upload mode per file (lfs / regular)
    POST /{t}s/{repo}.git/info/lfs/objects/batch    LFS batch: upload + verify actions
    PUT  /_lfs/{t}s/{repo}/{oid}                    the content (a presigned-URL stand-in)
    POST /_lfs/verify/{t}s/{repo}                   LFS verify
    POST /api/{t}s/{repo}/commit/{rev}              ndjson commit
    POST /api/{t}s/{repo}/paths-info/{rev}          file info by path
    GET  /api/{t}s/{repo}/tree/{rev}[/{path}]       tree listing (paginated by Link header)
    HEAD/GET /{t}s/{repo}/resolve/{rev}/{path}      download
    POST /api/validate-yaml                         README metadata check
    GET  /api/whoami-v2
    GET  /api/agent-harnesses                       (huggingface_hub's user-agent registry)
    GET  /api/{t}s/{repo}/xet-{write,read}-token/…  refused (501): tests expect plain LFS

Model repos have no `models/` prefix in non-API URLs, as on the Hub. Every request
is counted by endpoint name (`counts`); faults (`add_fault`) answer an endpoint
with an error status a number of times or always. With `token` set, every call
but the LFS PUT (a presigned URL on the real Hub) must carry `Bearer <token>`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

REPO_TYPES = ("model", "dataset", "space")
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's size above which a file must be LFS
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".npz", ".gz", ".zip")


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Entry:
    size: int
    blob_oid: str
    content: bytes | None = None  # regular git files
    lfs_sha256: str | None = None  # LFS files (content in Repo.lfs)
    last_commit: dict | None = None


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


@dataclass
class Fault:
    """Answer `endpoint` with `status`: `times` times (None = always), then normally."""

    endpoint: str
    status: int = 500
    times: int | None = None
    retry_after: float | None = None
    hits: int = 0

    def fire(self) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class HubError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra


class FakeHub:
    def __init__(self, *, token: str | None = None, page_size: int = 50, host: str = "127.0.0.1"):
        self.token = token
        self.page_size = page_size
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.counts: Counter = Counter()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, str, int]] = []  # method, path, endpoint, status
        self.unknown: list[str] = []
        self._server = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle and test helpers -------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_fault(self, endpoint: str, status: int = 500, times: int | None = None,
                  retry_after: float | None = None) -> Fault:
        fault = Fault(endpoint, status, times, retry_after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    @property
    def uploads(self) -> int:
        """Successful LFS content uploads (bytes actually received)."""
        return self.counts["lfs_upload_ok"]

    @property
    def commits(self) -> int:
        """Commits actually created."""
        return self.counts["commit_ok"]

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        repo = self.repo(repo_id, repo_type)
        commit = repo.resolve(revision)
        return {path: self._content(repo, e) for path, e in commit.files.items()}

    @staticmethod
    def _content(repo: Repo, entry: Entry) -> bytes:
        return entry.content if entry.lfs_sha256 is None else repo.lfs[entry.lfs_sha256]

    # --- request handling -----------------------------------------------------------------
    def handle(self, method: str, raw_path: str, query: dict, headers, body: bytes):
        """Return (status, headers, body bytes) for one request."""
        endpoint, args = route(method, raw_path)
        with self.lock:
            self.counts[endpoint] += 1
        try:
            if endpoint == "unknown":
                with self.lock:
                    self.unknown.append(f"{method} {raw_path}")
                raise HubError(404, f"fake hub: no route for {method} {raw_path}")
            if endpoint not in _ANONYMOUS and self.token is not None:
                if headers.get("Authorization") != f"Bearer {self.token}":
                    raise HubError(401, "Invalid credentials in Authorization header")
            with self.lock:
                fault = next((f for f in self.faults if f.endpoint == endpoint and f.fire()), None)
            if fault is not None:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise HubError(fault.status, f"injected fault on {endpoint}", extra)
            with self.lock:
                status, out_headers, out = getattr(self, f"_{endpoint}")(method, query, headers, body, **args)
                self.counts[f"{endpoint}_ok"] += 1
        except HubError as err:
            status, out_headers = err.status, {"Content-Type": "application/json",
                                               "X-Error-Message": err.message, **err.headers}
            out = json.dumps({"error": err.message, **err.extra}).encode()
        with self.lock:
            self.log.append((method, raw_path, endpoint, status))
        return status, out_headers, out

    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
        return repo

    def _get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", {"X-Error-Code": "RevisionNotFound"})
        return commit

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def _new_commit(self, repo: Repo, parent: Commit | None, title: str, files: dict[str, Entry]) -> Commit:
        seed = f"{parent.oid if parent else ''}|{title}|{len(repo.commits)}|{sorted(files)}"
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(oid, parent.oid if parent else None, title, _now(), files)
        repo.commits[oid] = commit
        return commit

    @staticmethod
    def _json(obj, status: int = 200, headers: dict | None = None):
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()

    # endpoints ---------------------------------------------------------------------------
    def _create_repo(self, method, query, headers, body):
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org}/{name}" if org else f"user/{name}"
        url = self._repo_url(repo_type, repo_id)
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this repo", url=url)
        private = payload.get("private", payload.get("visibility") == "private")
        repo = Repo(repo_type, repo_id, bool(private))
        attrs = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
        initial = self._new_commit(repo, None, "initial commit", {
            ".gitattributes": Entry(len(attrs), git_blob_oid(attrs), content=attrs)})
        for entry in initial.files.values():
            entry.last_commit = {"id": initial.oid, "title": initial.title, "date": initial.date}
        repo.branches["main"] = initial.oid
        self.repos[(repo_type, repo_id)] = repo
        return self._json({"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def _repo_info(self, method, query, headers, body, repo_type, repo_id, revision="main"):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        card = None
        if "README.md" in commit.files:
            text = self._content(repo, commit.files["README.md"]).decode()
            if text.startswith("---"):
                card = yaml.safe_load(text.split("---", 2)[1])
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
            "createdAt": commit.date, "private": repo.private, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "cardData": card,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }
        return self._json(info)

    def _create_branch(self, method, query, headers, body, repo_type, repo_id, branch):
        repo = self._get_repo(repo_type, repo_id)
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repo.branches[branch] = self._get_commit(repo, start).oid
        return self._json({})

    def _preupload(self, method, query, headers, body, repo_type, repo_id, revision):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        out = []
        for item in json.loads(body)["files"]:
            path, size = item["path"], item["size"]
            sample = base64.b64decode(item["sample"])
            lfs = size >= LFS_THRESHOLD or path.endswith(LFS_SUFFIXES) or b"\0" in sample
            info = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = commit.files.get(path)
            if existing is not None:
                info["oid"] = existing.lfs_sha256 or existing.blob_oid
            out.append(info)
        return self._json({"files": out, "commitOid": commit.oid})

    def _lfs_batch(self, method, query, headers, body, repo_type, repo_id):
        repo = self._get_repo(repo_type, repo_id)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "fake hub: only LFS uploads are implemented")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.lfs:
                key = f"{repo_type}s/{repo_id}"
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/_lfs/{key}/{oid}", "header": {}},
                    "verify": {"href": f"{self.url}/_lfs/verify/{key}", "header": {}},
                }
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, json.dumps(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()

    def _lfs_upload(self, method, query, headers, body, repo_type, repo_id, oid):
        repo = self._get_repo(repo_type, repo_id)
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "fake hub: uploaded content does not match its sha256")
        repo.lfs[oid] = body
        return 200, {"ETag": f'"{oid}"'}, b""

    def _lfs_verify(self, method, query, headers, body, repo_type, repo_id):
        repo = self._get_repo(repo_type, repo_id)
        payload = json.loads(body)
        stored = repo.lfs.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            raise HubError(404, "fake hub: LFS object not found or wrong size")
        return self._json({})

    def _commit(self, method, query, headers, body, repo_type, repo_id, revision):
        repo = self._get_repo(repo_type, repo_id)
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", {"X-Error-Code": "RevisionNotFound"})
        parent = repo.resolve(revision)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "fake hub: commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != parent.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        touched = []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                content = base64.b64decode(value["content"])
                files[path] = Entry(len(content), git_blob_oid(content), content=content)
            elif key == "lfsFile":
                stored = repo.lfs.get(value["oid"])
                if stored is None:
                    raise HubError(422, f"Your push was rejected: LFS object {value['oid']} for {path} not found")
                if value.get("size") is not None and value["size"] != len(stored):
                    raise HubError(422, f"LFS object size mismatch for {path}")
                files[path] = Entry(len(stored), git_blob_oid(lfs_pointer(value["oid"], len(stored))),
                                    lfs_sha256=value["oid"])
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"fake hub: unsupported commit operation {key}")
            touched.append(path)
        commit = self._new_commit(repo, parent, header.get("summary") or "commit", files)
        for path in touched:
            if path in files:
                files[path].last_commit = {"id": commit.oid, "title": commit.title, "date": commit.date}
        repo.branches[revision] = commit.oid
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return self._json({"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{commit.oid}",
                           "commitOid": commit.oid, "pullRequestUrl": None})

    def _entry_json(self, path: str, entry: Entry, expand: bool) -> dict:
        out = {"type": "file", "path": path, "size": entry.size, "oid": entry.blob_oid}
        if entry.lfs_sha256 is not None:
            out["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size,
                          "pointerSize": len(lfs_pointer(entry.lfs_sha256, entry.size))}
        if expand and entry.last_commit:
            out["lastCommit"] = entry.last_commit
        return out

    @staticmethod
    def _folder_json(path: str, files: dict[str, Entry]) -> dict:
        children = sorted(p for p in files if p.startswith(path + "/"))
        return {"type": "directory", "path": path, "oid": hashlib.sha1("\n".join(children).encode()).hexdigest()}

    def _paths_info(self, method, query, headers, body, repo_type, repo_id, revision):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        form = parse_qs(body.decode())
        expand = form.get("expand", ["False"])[0].lower() == "true"
        out = []
        for path in form.get("paths", []):
            if path in commit.files:
                out.append(self._entry_json(path, commit.files[path], expand))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                out.append(self._folder_json(path.rstrip("/"), commit.files))
        return self._json(out)

    def _tree(self, method, query, headers, body, repo_type, repo_id, revision, path=""):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        expand = query.get("expand", ["False"])[0].lower() == "true"
        base = path.strip("/")
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Entry not found: {base}", {"X-Error-Code": "EntryNotFound"})
        entries, folders = [], set()
        for p in sorted(commit.files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                folder = prefix + "/".join(rest[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append(self._folder_json(folder, commit.files))
            if recursive or len(rest) == 1:
                entries.append(self._entry_json(p, commit.files[p], expand))
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor:cursor + self.page_size]
        link = {}
        if cursor + self.page_size < len(entries):
            quoted = "/" + quote(base, safe="") if base else ""
            nxt = (f"{self.url}/api/{repo_type}s/{repo_id}/tree/{quote(revision, safe='')}{quoted}"
                   f"?recursive={recursive}&expand={expand}&cursor={cursor + self.page_size}")
            link = {"Link": f'<{nxt}>; rel="next"'}
        return self._json(page, headers=link)

    def _resolve(self, method, query, headers, body, repo_type, repo_id, revision, path):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", {"X-Error-Code": "EntryNotFound"})
        content = self._content(repo, entry)
        etag = entry.lfs_sha256 or entry.blob_oid
        out_headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
        if entry.lfs_sha256 is not None:
            out_headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)})
        status = 200
        rng = headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(content) - 1
            out_headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        return status, out_headers, content

    def _validate_yaml(self, method, query, headers, body):
        text = json.loads(body).get("content", "")
        if text.startswith("---"):
            parts = text.split("---", 2)
            try:
                meta = yaml.safe_load(parts[1]) if len(parts) == 3 else None
            except yaml.YAMLError as exc:
                return self._json({"errors": [{"message": str(exc)}]}, status=400)
            if len(parts) != 3 or not isinstance(meta, dict):
                return self._json({"errors": [{"message": "metadata is not a YAML mapping"}]}, status=400)
        return self._json({"errors": [], "warnings": []})

    def _whoami(self, method, query, headers, body):
        return self._json({"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}})

    def _agent_harnesses(self, method, query, headers, body):
        # huggingface_hub fetches this registry once a day to tag its user agent.
        return self._json({"standardEnvVars": [], "harnesses": {}})

    def _xet(self, method, query, headers, body, **_):
        raise HubError(501, "fake hub: Xet is not implemented; use plain LFS (HF_HUB_DISABLE_XET=1)")


# The LFS PUT goes to a presigned storage URL; the harness registry is public.
_ANONYMOUS = ("lfs_upload", "agent_harnesses")
_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_TYPE = r"(?P<t>model|dataset|space)s"
_ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
    ("GET", rf"/api/{_TYPE}/{_REPO}/xet-(?:write|read)-token/(?P<rev>.+)", "xet"),
    ("GET", rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("POST", rf"/api/{_TYPE}/{_REPO}/branch/(?P<branch>[^/]+)", "create_branch"),
    ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/{_TYPE}/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("POST", rf"/(?:{_TYPE}/)?{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", rf"/_lfs/{_TYPE}/{_REPO}/(?P<oid>[0-9a-f]{{64}})", "lfs_upload"),
    ("POST", rf"/_lfs/verify/{_TYPE}/{_REPO}", "lfs_verify"),
    ("GET|HEAD", rf"/(?:{_TYPE}/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
_COMPILED = [(re.compile(m), re.compile(p), name) for m, p, name in _ROUTES]


def route(method: str, raw_path: str) -> tuple[str, dict]:
    """Endpoint name and its arguments (segments URL-decoded one by one, so a revision
    quoted as `refs%2Fpr%2F1` stays one segment)."""
    for m_re, p_re, name in _COMPILED:
        if not m_re.fullmatch(method):
            continue
        match = p_re.fullmatch(raw_path)
        if not match:
            continue
        g = {k: v for k, v in match.groupdict().items() if v is not None}
        args = {}
        if "ns" in g:
            args["repo_type"] = g.get("t", "model")
            args["repo_id"] = f"{unquote(g['ns'])}/{unquote(g['name'])}"
        if name == "repo_info" or "rev" in g:
            args["revision"] = unquote(g.get("rev", "main"))
        if "branch" in g:
            args["branch"] = unquote(g["branch"])
        if "path" in g:
            args["path"] = "/".join(unquote(s) for s in g["path"].split("/"))
        if "oid" in g:
            args["oid"] = g["oid"]
        return name, args
    return "unknown", {}


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; without this, Nagle's algorithm
        # and delayed ACKs stall every keep-alive request by ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # quiet: the hub keeps its own log
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = self._body()
            status, headers, out = hub.handle(self.command, parts.path, parse_qs(parts.query),
                                              self.headers, body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve

    return Handler
