"""Test doubles of the model hubs' file APIs, on 127.0.0.1, for the real clients to talk to.

`HfHubDouble` answers what `huggingface_hub` (2.x) calls to download and upload a repository
when `HF_ENDPOINT` points at it:

- `GET /api/models/{repo}/revision/{rev}`      repo info: the commit a branch, tag or hash is at
- `GET /api/models/{repo}/tree/{commit}`       the file listing of a commit
- `HEAD|GET /{repo}/resolve/{rev}/{file}`      a file, with `X-Repo-Commit` and `ETag` headers
- `POST /api/repos/create`, `POST /api/validate-yaml`, `POST /api/models/{repo}/preupload/{rev}`,
  `POST /api/models/{repo}/commit/{rev}`        create a repository and commit files (inline
                                                 base64, the "regular" upload mode)

with the Hub's error headers (`X-Error-Code: RepoNotFound | RevisionNotFound |
EntryNotFound`). Knobs: `corrupt[(commit, file)] = bytes` serves other bytes for one file
(the listing keeps the real size), `gets` counts file downloads per `(commit, file)`, `delay`
slows file downloads (to make concurrent loads overlap).

`KaggleDouble` answers the three RPCs `kagglehub` (1.x) makes to download a model variation
(`models.ModelApiService/GetModelInstance`, `ListModelInstanceVersionFiles`,
`DownloadModelInstanceVersion`, POSTed under `/api/v1/`). kagglehub cannot be given an endpoint
URL: `KAGGLE_API_ENVIRONMENT=TEST` points it at the fixed http://localhost:7777, so this double
listens on 127.0.0.1:7777 (the tests skip when that port is taken).

Neither is part of the package: only the tests use them. They keep everything in memory.
"""

import base64
import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _git_blob_sha(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Server:
    def _serve(self, port):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, str(value))
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _dispatch(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with double.lock:
                    double.requests.append((method, self.path))
                try:
                    status, payload, headers = double.handle(method, self.path, body, self.headers)
                except Exception as error:  # a bug in the double: answer 500 and keep serving
                    status, payload, headers = 500, {"error": repr(error)}, {}
                self._reply(status, payload, headers, head=method == "HEAD")

            def do_GET(self):  # noqa: N802
                self._dispatch("GET")

            def do_HEAD(self):  # noqa: N802
                self._dispatch("HEAD")

            def do_POST(self):  # noqa: N802
                self._dispatch("POST")

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        return self

    def stop(self):
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class HfHubDouble(_Server):
    """The Hugging Face Hub's file API for model repositories (see the module docstring).

    Example:
        >>> with HfHubDouble() as hub:
        ...     commit = hub.commit("org/repo", {"config.json": b"{}"}, tag="v1")
        ...     os.environ["HF_ENDPOINT"] = hub.url
    """

    def __init__(self):
        self.repos = {}  # repo -> {"refs": {name: commit}, "commits": {commit: {path: bytes}}}
        self.corrupt = {}
        self.gets = {}
        self.delay = 0.0
        self._counter = 0
        self.lock = threading.Lock()
        self.requests = []
        self._http = None

    def start(self):
        return self._serve(0)

    # ------------------------------------------------------------------ state
    def commit(self, repo, files, branch="main", tag=None):
        """Add a commit of `files` ({path: bytes}) on top of `branch`; returns its hash."""
        with self.lock:
            state = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
            parent = state["commits"].get(state["refs"].get(branch), {})
            self._counter += 1
            sha = hashlib.sha1(f"{repo}/{self._counter}".encode()).hexdigest()
            state["commits"][sha] = {**parent, **files}
            state["refs"][branch] = sha
            if tag:
                state["refs"][tag] = sha
            return sha

    def _resolve(self, repo, revision):
        state = self.repos.get(repo)
        if state is None:
            return None, (404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        commit = state["refs"].get(revision, revision if revision in state["commits"] else None)
        if commit is None:
            return None, (404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
        return commit, None

    # ------------------------------------------------------------------ HTTP
    def handle(self, method, raw_path, body, headers):
        parsed = urllib.parse.urlsplit(raw_path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        if parts[:2] == ["api", "repos"] and parts[2:] == ["create"] and method == "POST":
            request = json.loads(body or b"{}")
            repo = f"{request.get('organization')}/{request['name']}" if request.get("organization") else request["name"]
            if repo not in self.repos:  # like the Hub, a new repository starts with one (here empty) commit
                self.commit(repo, {})
            return 200, {"url": f"{self.url}/{repo}", "name": repo}, {}
        if parts == ["api", "validate-yaml"] and method == "POST":  # README.md metadata check before a commit
            return 200, {"errors": [], "warnings": []}, {}
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo, action, revision = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
            if action in ("revision", "tree", "preupload", "commit"):
                commit, error = self._resolve(repo, revision)
                if error:
                    return error
                return getattr(self, f"_{action}")(repo, commit, body)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            commit, error = self._resolve(repo, revision)
            if error:
                return error
            return self._file(repo, commit, path, method)
        return 404, {"error": f"test double: no route for {method} {raw_path}"}, {}

    def _revision(self, repo, commit, body):
        files = self.repos[repo]["commits"][commit]
        return 200, {"id": repo, "modelId": repo, "sha": commit, "private": False, "disabled": False,
                     "siblings": [{"rfilename": p} for p in sorted(files)], "tags": [], "downloads": 0, "likes": 0}, {}

    def _tree(self, repo, commit, body):
        files = self.repos[repo]["commits"][commit]
        return 200, [{"type": "file", "path": p, "size": len(d), "oid": _git_blob_sha(d)} for p, d in sorted(files.items())], {}

    def _file(self, repo, commit, path, method):
        files = self.repos[repo]["commits"][commit]
        if path not in files:
            return 404, {"error": f"Entry not found: {path}"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
        data = self.corrupt.get((commit, path), files[path])
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_git_blob_sha(files[path])}"', "Content-Type": "application/octet-stream"}
        if method == "GET":
            with self.lock:
                self.gets[(commit, path)] = self.gets.get((commit, path), 0) + 1
            if self.delay:
                time.sleep(self.delay)
        return 200, data, {**headers, "Content-Length": len(data)}

    def _preupload(self, repo, commit, body):
        files = json.loads(body)["files"]
        return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                               for f in files]}, {}

    def _commit(self, repo, commit, body):
        added, message = {}, None
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                message = item["value"].get("summary")
            elif item["key"] == "file":
                value = item["value"]
                added[value["path"]] = base64.b64decode(value["content"])
            else:
                return 400, {"error": f"test double: unsupported commit operation {item['key']}"}, {}
        branch = next(name for name, sha in self.repos[repo]["refs"].items() if sha == commit)
        sha = self.commit(repo, added, branch=branch)
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha, "commitMessage": message,
                     "pullRequestUrl": None}, {}


class KaggleDouble(_Server):
    """Kaggle Models' download API for `kagglehub` (see the module docstring).

    Example:
        >>> with KaggleDouble() as kaggle:   # 127.0.0.1:7777; set KAGGLE_API_ENVIRONMENT=TEST
        ...     kaggle.add_version("owner/model/keras/tiny", {"config.json": b"{}"})
    """

    PORT = 7777

    def __init__(self):
        self.models = {}  # "owner/model/keras/variant" -> {version: {path: bytes}}
        self.corrupt = {}
        self.gets = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        self.requests = []
        self._http = None

    def start(self):
        return self._serve(self.PORT)

    def add_version(self, handle, files):
        """Add the next version of a variation; returns its number."""
        versions = self.models.setdefault(handle, {})
        number = max(versions, default=0) + 1
        versions[number] = dict(files)
        return number

    def handle(self, method, raw_path, body, headers):
        prefix = "/api/v1/models.ModelApiService/"
        if method != "POST" or not raw_path.startswith(prefix):
            return 404, {"code": 404, "message": f"test double: no route for {method} {raw_path}"}, {}
        request = json.loads(body or b"{}")
        handle = f"{request.get('ownerSlug')}/{request.get('modelSlug')}/keras/{request.get('instanceSlug')}"
        versions = self.models.get(handle)
        if not versions:
            return 404, {"code": 404, "message": f"Model instance {handle} not found"}, {}
        rpc = raw_path[len(prefix):]
        if rpc == "GetModelInstance":
            return 200, {"versionNumber": max(versions), "slug": request.get("instanceSlug"), "framework": "keras"}, {}
        number = request.get("versionNumber")
        if number not in versions:
            return 404, {"code": 404, "message": f"Version {number} of {handle} not found"}, {}
        files = versions[number]
        if rpc == "ListModelInstanceVersionFiles":
            return 200, {"files": [{"name": p, "size": len(d)} for p, d in sorted(files.items())],
                         "nextPageToken": ""}, {}
        if rpc == "DownloadModelInstanceVersion":
            path = request.get("path")
            if path not in files:
                return 404, {"code": 404, "message": f"File {path} not found"}, {}
            with self.lock:
                self.gets[(handle, number, path)] = self.gets.get((handle, number, path), 0) + 1
            if self.delay:
                time.sleep(self.delay)
            data = self.corrupt.get((handle, number, path), files[path])
            return 200, data, {"Content-Type": "application/octet-stream", "Content-Length": len(data)}
        return 404, {"code": 404, "message": f"test double: unknown RPC {rpc}"}, {}
