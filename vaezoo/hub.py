"""Model hubs: `hf://` and `kaggle://` URIs to local preset folders, and publishing presets.

    hf://ORG/REPO[@REVISION]                       Hugging Face Hub, through `huggingface_hub`
    kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]   Kaggle Models, through `kagglehub`

Both clients are an optional extra (`pip install "vaezoo[hub]"`) imported only when a URI is
used. Files are cached by the clients themselves (`HF_HUB_CACHE`, `KAGGLEHUB_CACHE`), so a
second load makes no download, and `HF_HUB_OFFLINE=1` loads from the cache without a request.
What is downloaded is exactly the preset's files (`vaezoo.presets.FILES`); `vaezoo.presets`
then checks each against the sha256 in `metadata.json` before a model is built.

`HF_ENDPOINT` and `HF_HUB_OFFLINE` are read at each call (the client itself reads them once,
at import). Kaggle's client is pointed elsewhere only by `KAGGLE_API_ENVIRONMENT` (e.g. `TEST`:
http://localhost:7777), which the tests use for their loopback test double.

Example:
    >>> path = vaezoo.hub.fetch("hf://my-org/vae-mnist@v1")   # local preset folder (cached)
    >>> vaezoo.hub.upload("presets/vae-mnist", "hf://my-org/vae-mnist")
"""

import contextlib
import hashlib
import os
import re
import typing

from vaezoo import presets

SCHEMES = ("hf", "kaggle")
_HF = re.compile(r"^hf://([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([^\s@]+))?$")
_KAGGLE = re.compile(r"^kaggle://([\w.-]+)/([\w.-]+)/([\w.-]+)/([\w.-]+)(?:/(\d+))?$")
INSTALL_HINT = 'pip install "vaezoo[hub]"'


class HubError(ValueError):
    """A hub URI could not be resolved or published; the message names the URI and the reason."""


class MissingExtraError(ImportError):
    """The hub client for a URI is not installed; the message says `pip install "vaezoo[hub]"`."""


class HubRef(typing.NamedTuple):
    """A parsed hub URI."""

    scheme: str  #: "hf" or "kaggle"
    repo: str  #: "ORG/REPO", or the Kaggle handle "OWNER/MODEL/keras/VARIANT" (no version)
    revision: typing.Optional[str]  #: hf: branch, tag or commit; kaggle: version number as text; or None
    uri: str  #: the URI as given


def is_uri(ref):
    """True if `ref` is a string starting with `hf://` or `kaggle://`."""
    return isinstance(ref, str) and ref.split("://", 1)[0] in SCHEMES and "://" in ref


def parse_uri(uri):
    """Split a hub URI into a `HubRef`; a malformed URI is a `HubError` naming the expected form."""
    match = _HF.match(uri)
    if match:
        return HubRef("hf", match.group(1), match.group(2), uri)
    match = _KAGGLE.match(uri)
    if match:
        owner, model, framework, variant, version = match.groups()
        if framework != "keras":
            raise HubError(f"{uri}: vaezoo presets are Kaggle 'keras' models; expected "
                           f"kaggle://OWNER/MODEL/keras/VARIANT[/VERSION], got framework {framework!r}.")
        return HubRef("kaggle", f"{owner}/{model}/{framework}/{variant}", version, uri)
    raise HubError(f"{uri!r} is not a hub URI: expected hf://ORG/REPO[@REVISION] or "
                   "kaggle://OWNER/MODEL/keras/VARIANT[/VERSION].")


def _client(name, uri):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtraError(f"{uri} needs the {name} package, an optional extra of vaezoo: "
                                f"{INSTALL_HINT}") from None


def _truthy(text):
    return str(text or "").strip().lower() in ("1", "true", "yes", "on")


def _hf_options():
    options = {"endpoint": os.environ.get("HF_ENDPOINT") or None}
    if os.environ.get("HF_HUB_CACHE"):
        options["cache_dir"] = os.environ["HF_HUB_CACHE"]
    return options


def _hf_where():
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def fetch(uri):
    """The local folder of the preset at hub URI `uri`, downloaded through the hub's client and
    cached by it (a cached copy is used without a download). The files are not verified here:
    `vaezoo.presets.read_preset` does that.

    Args:
        uri: `hf://ORG/REPO[@REVISION]` or `kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]`.

    Raises:
        HubError: no network and nothing cached, no such repository / revision / version.
        MissingExtraError: the hub client is not installed.

    Example:
        >>> vaezoo.hub.fetch("hf://my-org/vae-mnist@3f2a...")   # a commit pins the files
    """
    ref = parse_uri(uri)
    if ref.scheme == "hf":
        return _fetch_hf(ref)
    return _fetch_kaggle(ref)


def _fetch_hf(ref):
    hf = _client("huggingface_hub", ref.uri)
    from huggingface_hub import errors

    offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    try:
        return hf.snapshot_download(ref.repo, revision=ref.revision, allow_patterns=list(presets.FILES),
                                    local_files_only=offline, **_hf_options())
    except errors.RepositoryNotFoundError:
        raise HubError(f"{ref.uri}: no repository {ref.repo!r} on {_hf_where()} (or it is private or gated: "
                       "log in with `hf auth login` or set HF_TOKEN).") from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{ref.uri}: repository {ref.repo!r} has no revision {ref.revision or 'main'!r} on {_hf_where()}.") from None
    except errors.LocalEntryNotFoundError as error:
        why = "HF_HUB_OFFLINE is set" if offline else f"{_hf_where()} cannot be reached"
        raise HubError(f"{ref.uri}: {why} and the Hugging Face cache holds no copy of it "
                       f"(revision {ref.revision or 'main'}); connect to the network once to download it. "
                       f"({type(error).__name__})") from None
    except errors.EntryNotFoundError as error:
        raise HubError(f"{ref.uri}: a file of the preset is missing from the repository ({error}).") from None
    except errors.HfHubHTTPError as error:
        raise HubError(f"{ref.uri}: {_hf_where()} answered {str(error).splitlines()[0]}") from None


@contextlib.contextmanager
def _exclusive(key):
    """A per-handle file lock, so concurrent processes share one kagglehub cache entry (the
    Hugging Face client locks its own cache)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    from kagglehub.config import get_cache_folder

    folder = get_cache_folder()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f".vaezoo-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fetch_kaggle(ref):
    kagglehub = _client("kagglehub", ref.uri)
    import requests
    from kagglehub import exceptions

    handle = ref.repo + (f"/{ref.revision}" if ref.revision else "")
    try:
        with _exclusive(handle):
            return kagglehub.model_download(handle)
    except exceptions.NotFoundError:
        raise HubError(f"{ref.uri}: no model {handle!r} on Kaggle (or it is private: set KAGGLE_API_TOKEN or "
                       "KAGGLE_USERNAME/KAGGLE_KEY).") from None
    except requests.exceptions.ConnectionError:
        raise HubError(f"{ref.uri}: Kaggle cannot be reached and the kagglehub cache holds no copy of "
                       f"{handle!r} (a pinned /VERSION is served from the cache offline).") from None
    except (exceptions.KaggleApiHTTPError, requests.exceptions.HTTPError) as error:
        if getattr(error.response, "status_code", None) == 404:
            what = f"version {ref.revision} of {ref.repo!r}" if ref.revision else f"model variation {ref.repo!r}"
            raise HubError(f"{ref.uri}: no {what} on Kaggle (or it is private: set KAGGLE_API_TOKEN or "
                           "KAGGLE_USERNAME/KAGGLE_KEY).") from None
        raise HubError(f"{ref.uri}: Kaggle answered {str(error).splitlines()[0]}") from None


def upload(preset_dir, uri, message=None, private=False, license_name="Apache 2.0"):
    """Publish the preset folder `preset_dir` at `uri` with the hub's own client.

    The preset is read and verified first (a damaged preset is never published). On the
    Hugging Face Hub the repository is created if needed and one commit adds the preset's
    files; on Kaggle a new version of the model variation is created.

    Args:
        preset_dir: a folder written by `vaezoo.save_preset`.
        uri: `hf://ORG/REPO[@BRANCH]` or `kaggle://OWNER/MODEL/keras/VARIANT`.
        message: commit message / version notes.
        private: create the Hugging Face repository as private.
        license_name: Kaggle licence of a new model.

    Returns:
        What identifies the upload: the commit hash (hf) or the handle (kaggle).

    Example:
        >>> vaezoo.hub.upload("presets/vae-mnist", "hf://my-org/vae-mnist")
        '6c1f...'
    """
    ref = parse_uri(uri)
    preset = presets.read_preset(preset_dir)
    message = message or f"Upload {preset.card['name']} ({preset.family}) with vaezoo"
    if ref.scheme == "hf":
        hf = _client("huggingface_hub", uri)
        from huggingface_hub import errors

        api = hf.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
        try:
            api.create_repo(ref.repo, exist_ok=True, private=private)
            info = api.upload_folder(repo_id=ref.repo, folder_path=preset.path, allow_patterns=list(presets.FILES),
                                     commit_message=message, revision=ref.revision)
        except errors.HfHubHTTPError as error:
            raise HubError(f"{uri}: upload to {_hf_where()} failed: {str(error).splitlines()[0]}") from None
        return info.oid
    if ref.revision:
        raise HubError(f"{uri}: upload to a Kaggle model variation without a version (Kaggle numbers versions).")
    kagglehub = _client("kagglehub", uri)
    try:
        kagglehub.model_upload(ref.repo, preset.path, license_name=license_name, version_notes=message)
    except Exception as error:  # kagglehub raises several request and API error types
        raise HubError(f"{uri}: upload to Kaggle failed: {str(error).splitlines()[0] if str(error) else error!r}") from None
    return ref.repo


__all__ = ["HubError", "HubRef", "INSTALL_HINT", "MissingExtraError", "fetch", "is_uri", "parse_uri", "upload"]
