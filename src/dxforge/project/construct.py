"""construct.yaml (conda constructor's format) for a linux-64 ``.sh`` installer: one
declarative schema (:data:`SCHEMA`), as constructor keeps its own in one place.

Every one of constructor's 78 keys is an entry: what it must be, the check that turns its value
into what dxforge uses, and what it does here, or why dxforge refuses it and what to do instead.
A key outside the schema is an error with the nearest known name. Selectors (``# [linux]``)
work as in constructor; jinja does not.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.conda.channel import channel_url
from dxforge.core.util import DxError, read_utf8, yaml_kind

PLATFORM = "linux-64"

_SEL = re.compile(r"(.+?)\s*(#.*)?\[([^\[\]]+)\](?(2)[^\(\)]*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")
_ENVVAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# default_prefix is expanded by the installer's shell: allow $VAR and ${VAR}, nothing else.
_PREFIX_TEMPLATE = re.compile(
    r"^(?:[A-Za-z0-9/._+@%,=-]|\$\{[A-Za-z_][A-Za-z0-9_]*\}|"
    r"\$[A-Za-z_][A-Za-z0-9_]*)+$"
)
_VIRTUAL = re.compile(r"(__[a-z0-9_]+)\s*(.*)")


def platform_namespace(platform: str = PLATFORM) -> dict[str, bool]:
    """The selector names constructor defines, evaluated for ``platform``."""
    p = platform
    return {
        "linux": p.startswith("linux-"),
        "linux32": p == "linux-32",
        "linux64": p == "linux-64",
        "armv7l": p == "linux-armv7l",
        "aarch64": p == "linux-aarch64",
        "ppc64le": p == "linux-ppc64le",
        "arm64": p == "osx-arm64",
        "s390x": p == "linux-s390x",
        "x86": p.endswith(("-32", "-64")),
        "x86_64": p.endswith("-64"),
        "osx": p.startswith("osx-"),
        "unix": p.startswith(("linux-", "osx-")),
        "win": p.startswith("win-"),
        "win32": p == "win-32",
        "win64": p == "win-64",
    }


def eval_selector(expr: str, namespace: dict[str, bool]) -> bool:
    """Evaluate a selector such as ``linux and not aarch64`` (names, not/and/or, parentheses)."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a valid selector expression ({e.msg})") from None

    def ev(node: ast.AST) -> bool:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Name):
            if node.id not in namespace:
                near = difflib.get_close_matches(node.id, namespace, n=1)
                hint = f"; did you mean `{near[0]}`?" if near else ""
                raise ValueError(f"unknown selector name `{node.id}`{hint}")
            return namespace[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        raise ValueError(
            "selectors may only use platform names, `not`, `and`, `or` and "
            f"parentheses (known names: {', '.join(sorted(namespace))})"
        )

    return ev(tree)


def select_lines(text: str, path: Path, platform: str = PLATFORM) -> str:
    """Apply constructor-style line selectors; dropped lines become blank so line numbers hold."""
    ns = platform_namespace(platform)
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        quote = line[-1] if line and line[-1] in "'\"" else ""
        m = _SEL.match(line)
        if not m or not m.group(2):  # a selector lives in a comment; `key: [a]` is a list
            out.append(line)
            continue
        try:
            keep = eval_selector(m.group(3), ns)
        except ValueError as e:
            raise DxError(f"{path}:{lineno}: selector `[{m.group(3)}]`: {e}") from None
        out.append(m.group(1) + quote if keep else "")
    return "\n".join(out) + "\n"


def _line_of(node: Any, key: Any) -> int | None:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _item_line(seq: Any, index: int) -> int | None:
    try:
        return seq.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


@dataclass(frozen=True)
class ConstructSpec:
    """A validated construct.yaml; paths are absolute, ``specs`` are after selectors."""

    path: Path
    name: str
    version: str
    channels: list[str]
    specs: list[str]
    exclude: list[str] = field(default_factory=list)
    post_install: Path | None = None
    default_prefix: str = ""
    batch_mode: bool = False
    write_condarc: bool = False
    conda_default_channels: list[str] = field(default_factory=list)
    license_file: Path | None = None
    installer_filename: str = ""
    script_env_variables: dict[str, str] = field(default_factory=dict)
    install_path_exists_error_text: str = ""
    ignore_duplicate_files: bool = True
    keep_pkgs: bool = False
    transmute_file_type: str = ""
    company: str = ""
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    """Package names listed more than once in specs (all entries go to the solver)."""
    virtual_specs: list[str] = field(default_factory=list)
    glibc: str | None = None
    """The glibc floor virtual_specs declares (``__glibc >=X``)."""
    linux: str | None = None
    """The oldest kernel virtual_specs declares (``__linux >=X``)."""
    notes: list[str] = field(default_factory=list)
    """Keys accepted (as constructor accepts them) that have no effect here, and why."""

    @property
    def spec_names(self) -> list[str]:
        """Package names of ``specs``."""
        from rattler import MatchSpec

        return [MatchSpec(s).name.normalized for s in self.specs]

    def where(self, key: str) -> str:
        """``file:line`` of ``key`` for error messages."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    def channel_sources(self) -> list[str]:
        """Channels as rattler understands them: local paths become absolute ``file://`` URLs,
        relative to construct.yaml."""
        return [channel_url(c, self.path.parent) for c in self.channels]


@dataclass
class _Reading:
    """One construct.yaml being read: where each key is, and what the checks made of it."""

    path: Path
    lines: dict[str, int]
    raw: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def at(self, key: str, index: int | None = None) -> str:
        line = None
        if index is not None:
            line = _item_line(self.raw.get(key), index)
        line = line or self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    def fail(self, key: str, why: str, index: int | None = None) -> DxError:
        return DxError(f"{self.at(key, index)}: `{key}`: {why}")


Check = Callable[[Any, _Reading, str], Any]


@dataclass(frozen=True)
class Key:
    """One constructor key: what dxforge does with it."""

    name: str
    kind: tuple[type, ...]  # the YAML types it may have; () for a refused key
    expects: str  # what it must be, for errors
    effect: str  # what it does in a dxforge installer, or why it is refused
    check: Check | None = None  # value -> what ConstructSpec holds
    fix: str = ""  # for a refused key: what to do instead
    idle: Callable[[Any, dict[str, Any]], str] | None = None
    """(value, all keys) -> why this value has no effect in a dxforge installer, or ``""``:
    such a key is accepted, as constructor accepts it, and reported once."""

    @property
    def refused(self) -> bool:
        return not self.kind


def _same(value: Any, r: _Reading, key: str) -> Any:
    return value


def _text(value: Any, r: _Reading, key: str) -> str:
    if not str(value).strip():
        raise r.fail(key, "is empty; write a value or remove the key")
    return str(value)


def _strings(nonempty: bool = False) -> Check:
    def check(value: Any, r: _Reading, key: str) -> list[str]:
        if nonempty and not value:
            raise r.fail(key, "is empty; list at least one entry")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise r.fail(key, f"entry {i + 1} must be non-empty text, not {yaml_kind(item)}", i)
            out.append(item.strip())
        return out

    return check


def _only(allowed: Any, fix: str) -> Check:
    def check(value: Any, r: _Reading, key: str) -> Any:
        if value != allowed:
            shown = str(value).lower() if isinstance(value, bool) else value
            raise r.fail(key, f"`{shown}` is not supported; {fix}")
        return value

    return check


def _file(value: Any, r: _Reading, key: str) -> Path:
    p = (r.path.parent / str(value)).resolve()
    if not p.is_file():
        raise r.fail(
            key, f"names {p}, which is not a file; fix the path (it is relative to construct.yaml)"
        )
    return p


def _name(value: Any, r: _Reading, key: str) -> str:
    if not _NAME.match(str(value)):
        raise r.fail(key, f"`{value}` may only use letters, digits, `.`, `_` and `-`")
    return str(value)


def _version(value: Any, r: _Reading, key: str) -> str:
    if not _VERSION.match(str(value)):
        raise r.fail(key, f"`{value}` may only use letters, digits and `._+!-`")
    return str(value)


def _specs(value: Any, r: _Reading, key: str) -> list[str]:
    from rattler import MatchSpec

    specs = _strings(nonempty=True)([value] if isinstance(value, str) else value, r, key)
    for i, s in enumerate(specs):
        try:
            MatchSpec(s)
        except Exception as e:  # rattler raises its own exception types
            raise r.fail(
                key,
                f"`{s}` is not a valid match spec ({e}); write it like "
                "`python 3.13.*` or `diracx ==0.7.0`",
                i,
            ) from None
    return specs


def _virtual(value: Any, r: _Reading, key: str) -> list[str]:
    specs = _strings()(value, r, key)
    for i, v in enumerate(specs):
        m = _VIRTUAL.fullmatch(v)
        if not m:
            raise r.fail(
                key,
                f"`{v}`: a virtual spec names a virtual package, starting with "
                "`__` (like `__glibc >=2.28`)",
                i,
            )
        name, rest = m[1], m[2].strip()
        if name in ("__glibc", "__linux"):
            if not re.fullmatch(r">=\s*\d+(?:\.\d+)*", rest):
                raise r.fail(
                    key,
                    f"`{v}`: only `>=` is allowed for {name} (as constructor "
                    f"does); write `{name} >=X.Y`",
                    i,
                )
        elif name == "__unix":
            if rest:
                raise r.fail(key, f"`{v}`: __unix has no version; write `__unix`", i)
        elif name == "__osx":
            raise r.fail(
                key,
                f"`{v}`: __osx is checked by macOS installers, and this "
                f"construct.yaml builds {PLATFORM}; put it under an `# [osx]` "
                "selector",
                i,
            )
        else:
            raise r.fail(
                key,
                f"`{v}`: dxforge installers check __glibc, __linux and __unix "
                f"(and __osx on macOS), not {name}; remove it",
                i,
            )
    return specs


def _default_prefix(value: Any, r: _Reading, key: str) -> str:
    if not _PREFIX_TEMPLATE.match(str(value)):
        raise r.fail(
            key,
            f"`{value}` may use letters, digits, `/._+@%,=-` and $VAR or "
            "${VAR}, nothing else (no blanks, quotes or command substitution)",
        )
    return str(value)


def _installer_filename(value: Any, r: _Reading, key: str) -> str:
    name = str(value)
    if "/" in name or not name.endswith(".sh") or not _NAME.match(name):
        raise r.fail(
            key, f"`{name}` must be a plain file name ending in .sh (letters, digits, `._-`)"
        )
    return name


def _env_variables(value: Any, r: _Reading, key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _ENVVAR.match(k):
            raise r.fail(key, f"`{k}` is not a valid environment variable name")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise r.fail(key, f"the value of `{k}` must be text, not {yaml_kind(v)}")
        out[k] = str(v)
    return out


def _exists_text(value: Any, r: _Reading, key: str) -> str:
    text = str(value)
    if '"' in text or "\n" in text:
        raise r.fail(key, "the text may not contain double quotes or newlines")
    return text


def _transmute(value: Any, r: _Reading, key: str) -> str:
    if value != ".conda":
        raise r.fail(key, f"`{value}`: constructor allows `.conda` only")
    return value


def _transmute_idle(value: Any, raw: dict[str, Any]) -> str:
    if raw.get("keep_pkgs") is True:
        return ""
    return (
        "it converts the package files kept in the prefix's pkgs/, and without "
        "`keep_pkgs: true` a dxforge installer keeps none (its packages are .conda files "
        "either way)"
    )


def _default_idle(default: Any, why: str) -> Callable[[Any, dict[str, Any]], str]:
    return lambda value, raw: why if value == default else ""


_ANY_STR, _LIST, _BOOL, _DICT = (str,), (list,), (bool,), (dict,)
_GUI = "a graphical installer's (exe, pkg)"


def _refused(name: str, what: str, fix: str) -> Key:
    return Key(name, (), "", what, fix=fix)


SCHEMA: tuple[Key, ...] = (
    # identity and outputs
    Key("$schema", _ANY_STR, "text", "names the JSON schema for editors; nothing else", _same),
    Key("name", _ANY_STR, "text", "the installer's name (banner, diracosrc, file name)", _name),
    Key("version", (str, int), "text", "the installer's version (banner, file name)", _version),
    Key(
        "installer_filename",
        _ANY_STR,
        "a file name ending in .sh",
        "the installer's file name",
        _installer_filename,
    ),
    Key(
        "installer_type",
        (str, list),
        "sh",
        "the installer is a self-extracting .sh",
        lambda v, r, k: _only("sh", "dxforge builds `sh` installers only")(
            v[0] if isinstance(v, list) and len(v) == 1 else v, r, k
        ),
    ),
    Key(
        "license_file",
        _ANY_STR,
        "a path relative to construct.yaml",
        "shipped in .dxforge/LICENSE.txt, shown for acceptance when not in batch mode",
        _file,
    ),
    Key("company", _ANY_STR, "text", "named by the installer's banner and -h", _text),
    _refused(
        "reverse_domain_identifier",
        "a macOS installer's identifier",
        "dxforge builds .sh installers, which have none; remove it",
    ),
    _refused(
        "uninstall_name",
        "a Windows installer's uninstall entry",
        "a .sh install is removed by deleting its prefix; remove it",
    ),
    _refused(
        "build_outputs",
        "constructor's extra outputs",
        "dxforge always writes the .sha256, the @EXPLICIT lockfile and the package list "
        "beside the installer; remove it",
    ),
    # packages and solve
    Key(
        "channels",
        _LIST,
        "a list of channel names, URLs or paths",
        "where the specs are solved from (--channel replaces them)",
        _strings(nonempty=True),
    ),
    _refused(
        "channels_remap",
        "rewrites channel URLs in the installed records",
        "dxforge names local channels as file:///opt/dxforge/channels/<name>; remove it",
    ),
    _refused(
        "mirrored_channels",
        "mirrors written into the installed .condarc",
        "write the mirrors into the users' own .condarc; remove it",
    ),
    Key("specs", (list, str), "a list of match specs", "what the installer installs", _specs),
    _refused(
        "user_requested_specs",
        "what conda-meta/history records as asked for",
        "dxforge records `specs` there; remove it",
    ),
    Key(
        "virtual_specs",
        _LIST,
        "a list of virtual package specs such as `__glibc >=2.28`",
        "the solver takes packages for them, the build fails when a file needs a newer glibc, "
        "and the installer refuses an older glibc or kernel before writing anything",
        _virtual,
    ),
    Key(
        "exclude",
        _LIST,
        "a list of package names",
        "packages of the solution left out of the installer",
        _strings(),
    ),
    _refused(
        "environment",
        "an existing conda environment to copy",
        "list what it holds in `specs`; remove it",
    ),
    _refused(
        "environment_file",
        "an environment file to solve instead of `specs`",
        "list its specs in `specs`; remove it",
    ),
    _refused(
        "extra_envs",
        "more environments beside the base one",
        "a dxforge installer holds one environment; make another installer",
    ),
    _refused("menu_packages", "menu shortcuts", "a .sh installer makes none; remove it"),
    Key(
        "ignore_duplicate_files",
        _BOOL,
        "true or false",
        "with false, the build fails when two packages ship the same file (constructor's "
        "default is true)",
        _same,
        idle=_default_idle(
            True,
            "true is what a dxforge installer does anyway (only false "
            "changes something: the build then fails on a file two "
            "packages ship)",
        ),
    ),
    Key(
        "transmute_file_type",
        _ANY_STR,
        "'.conda'",
        "the packages kept in pkgs/ (keep_pkgs: true) are .conda files",
        _transmute,
        idle=_transmute_idle,
    ),
    _refused(
        "install_in_dependency_order",
        "deprecated by constructor",
        "packages are always linked in dependency order; remove it",
    ),
    _refused(
        "attempt_hardlinks",
        "deprecated by constructor",
        "the installer unpacks an installed prefix; remove it",
    ),
    # written into the prefix
    Key(
        "write_condarc",
        _BOOL,
        "true or false",
        "writes .condarc with the remote channels (or conda_default_channels)",
        _same,
    ),
    _refused(
        "condarc",
        "a .condarc of your own",
        "use write_condarc with conda_default_channels; remove it",
    ),
    Key(
        "conda_default_channels",
        _LIST,
        "a list of channel names",
        "written into .condarc as default_channels (with write_condarc)",
        _strings(),
    ),
    _refused(
        "conda_channel_alias",
        "the channel_alias of the installed .condarc",
        "write full channel URLs in conda_default_channels; remove it",
    ),
    Key(
        "register_envs",
        _BOOL,
        "false",
        "false: the installer writes nothing outside its prefix (no ~/.conda/environments.txt)",
        _only(False, "dxforge installers never register environments; set `register_envs: false`"),
    ),
    _refused(
        "freeze_base",
        "a frozen base environment (a conda feature)",
        "a dxforge prefix has no conda in it; remove it",
    ),
    Key(
        "keep_pkgs",
        _BOOL,
        "true or false",
        "true: the solved .conda files are kept in the prefix's pkgs/, as conda's cache",
        _same,
    ),
    _refused(
        "extra_files",
        "files copied into the prefix",
        "ship them in a package of the specs, or write them in the post_install script",
    ),
    _refused(
        "temp_extra_files",
        "files available to the install scripts only",
        "ship them in a package of the specs; remove it",
    ),
    # prefix and install behaviour
    Key(
        "batch_mode",
        _BOOL,
        "true or false",
        "true: no questions unless -i; false: the license and prefix are asked for",
        _same,
    ),
    Key(
        "default_prefix",
        _ANY_STR,
        "text",
        "the prefix when -p is not given ($VAR and ${VAR} expanded by the shell)",
        _default_prefix,
    ),
    _refused(
        "default_prefix_domain_user", _GUI + " per-user prefix", "use default_prefix; remove it"
    ),
    _refused(
        "default_prefix_all_users", _GUI + " all-users prefix", "use default_prefix; remove it"
    ),
    _refused("default_location_pkg", "a macOS installer's location", "remove it"),
    _refused("pkg_domains", "a macOS installer's domains", "remove it"),
    _refused("pkg_name", "a macOS installer's package name", "remove it"),
    Key(
        "install_path_exists_error_text",
        _ANY_STR,
        "text",
        "the error when the prefix exists ({CHOSEN_PATH} replaced)",
        _exists_text,
    ),
    Key(
        "check_path_spaces",
        _BOOL,
        "true",
        "true: a prefix with blanks or shell-special characters is refused",
        _only(
            True,
            "dxforge installers always refuse prefixes with blanks (relocated "
            "shebangs cannot hold them); remove the key",
        ),
    ),
    _refused(
        "check_path_length",
        "deprecated by constructor",
        "the installer always checks the prefix against its binary files' room; remove it",
    ),
    _refused(
        "initialize_conda",
        "`conda init` of the user's shell",
        "a dxforge prefix has no conda; users source diracosrc; remove it",
    ),
    _refused(
        "initialize_by_default",
        "`conda init` by default",
        "a dxforge prefix has no conda; remove it",
    ),
    _refused("register_python", "registering Python with Windows", "remove it"),
    _refused("register_python_default", "registering Python with Windows", "remove it"),
    _refused("uninstall_with_conda_exe", "a Windows uninstaller", "remove it"),
    # scripts
    _refused(
        "pre_install",
        "a script run before the files are unpacked",
        "do its work in the post_install script, which runs before the install is "
        "declared finished",
    ),
    _refused("pre_install_desc", _GUI + " description of pre_install", "remove it"),
    Key(
        "post_install",
        _ANY_STR,
        "a path relative to construct.yaml",
        "run after the files are in place; its failure undoes the install",
        _file,
    ),
    _refused("post_install_desc", _GUI + " description of post_install", "remove it"),
    _refused("pre_uninstall", "a Windows uninstaller's script", "remove it"),
    Key(
        "script_env_variables",
        _DICT,
        "a mapping of NAME: value",
        "exported, literally, to the post_install script",
        _env_variables,
    ),
    # signing
    _refused("signing_identity_name", "macOS signing", "a .sh is not signed; remove it"),
    _refused("notarization_identity_name", "macOS notarization", "remove it"),
    _refused("windows_signing_tool", "Windows signing", "remove it"),
    _refused("signing_certificate", "Windows signing", "remove it"),
    # graphical installers
    *(
        _refused(k, _GUI + " artwork or pages", "a .sh installer has no graphical pages; remove it")
        for k in (
            "welcome_image",
            "header_image",
            "icon_image",
            "default_image_color",
            "welcome_image_text",
            "header_image_text",
            "nsis_template",
            "welcome_file",
            "welcome_text",
            "readme_file",
            "readme_text",
            "post_install_pages",
            "conclusion_file",
            "conclusion_text",
            "progress_notifications",
        )
    ),
    # docker
    *(
        _refused(k, "constructor's docker images", "dxforge builds .sh installers; remove it")
        for k in ("docker_base_image", "docker_tag", "docker_labels", "docker_image_format")
    ),
)
KEYS = {k.name: k for k in SCHEMA}
REQUIRED = ("name", "version", "channels", "specs")


def _read_keys(r: _Reading) -> None:
    for key in r.raw:
        key = str(key)
        entry = KEYS.get(key)
        if entry is None:
            near = difflib.get_close_matches(key, sorted(KEYS), n=1, cutoff=0.6)
            hint = f"did you mean `{near[0]}`?" if near else "remove it"
            raise DxError(f"{r.at(key)}: unknown key `{key}`; {hint}")
        if entry.refused:
            raise DxError(
                f"{r.at(key)}: `{key}` ({entry.effect}) is not supported by dxforge: {entry.fix}"
            )
    for key in REQUIRED:
        if key not in r.raw:
            raise DxError(f"{r.path}: required key `{key}` is missing; add `{key}: ...`")
    for key, value in r.raw.items():
        entry = KEYS[str(key)]
        if isinstance(value, bool) and bool not in entry.kind or not isinstance(value, entry.kind):
            fix = "; quote it" if key == "version" and isinstance(value, float) else ""
            raise r.fail(str(key), f"must be {entry.expects}, not {yaml_kind(value)}{fix}")
        assert entry.check is not None
        r.values[str(key)] = entry.check(value, r, str(key))
        why = entry.idle(value, r.raw) if entry.idle else ""
        if why:
            r.notes.append(f"{r.at(str(key))}: `{key}` has no effect here: {why}")


def _floor(virtual: list[str], name: str) -> str | None:
    for v in virtual:
        m = _VIRTUAL.fullmatch(v)
        if m and m[1] == name:
            return m[2].strip().removeprefix(">=").strip()
    return None


def load_construct(path: Path | str, platform: str = PLATFORM) -> ConstructSpec:
    """Read and validate ``path`` against :data:`SCHEMA`; every error names the file, the line
    and the fix."""
    from rattler import MatchSpec
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path).resolve()
    try:
        text = read_utf8(path, "save construct.yaml as UTF-8 (retype that character)")
    except FileNotFoundError:
        raise DxError(
            f"{path}: no such file; write a construct.yaml (see the one at the top "
            "of the dxforge repository) or pass its path"
        ) from None
    except OSError as e:
        raise DxError(f"{path}: cannot read it ({e})") from None
    if "{{" in text or "{%" in text:
        line = next(i for i, s in enumerate(text.splitlines(), 1) if "{{" in s or "{%" in s)
        raise DxError(
            f"{path}:{line}: jinja templating is not supported by dxforge; "
            "write the value literally"
        )
    try:
        data = YAML(typ="rt").load(select_lines(text, path, platform))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise DxError(f"{where}: not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(data, dict):
        raise DxError(
            f"{path}: expected a mapping of constructor keys (name, version, channels, specs, ...)"
        )
    raw = {str(k): v for k, v in data.items() if v is not None}  # constructor drops nulls
    r = _Reading(path, {str(k): _line_of(data, k) or 0 for k in data}, raw)
    _read_keys(r)
    v = r.values
    seen: set[str] = set()
    duplicates: list[str] = []
    for s in v["specs"]:
        n = MatchSpec(s).name.normalized
        if n in seen and n not in duplicates:
            duplicates.append(n)
        seen.add(n)
    virtual = v.get("virtual_specs", [])
    return ConstructSpec(
        path=path,
        name=v["name"],
        version=v["version"],
        channels=v["channels"],
        specs=v["specs"],
        exclude=v.get("exclude", []),
        post_install=v.get("post_install"),
        default_prefix=v.get("default_prefix", "${PWD}/" + v["name"].lower()),
        batch_mode=v.get("batch_mode", False),
        write_condarc=v.get("write_condarc", False),
        conda_default_channels=v.get("conda_default_channels", []),
        license_file=v.get("license_file"),
        installer_filename=v.get(
            "installer_filename", f"{v['name']}-{v['version']}-Linux-x86_64.sh"
        ),
        script_env_variables=v.get("script_env_variables", {}),
        install_path_exists_error_text=v.get("install_path_exists_error_text", ""),
        ignore_duplicate_files=v.get("ignore_duplicate_files", True),
        keep_pkgs=v.get("keep_pkgs", False),
        transmute_file_type=v.get("transmute_file_type", ""),
        company=v.get("company", ""),
        lines=r.lines,
        duplicates=duplicates,
        virtual_specs=virtual,
        glibc=_floor(virtual, "__glibc"),
        linux=_floor(virtual, "__linux"),
        notes=r.notes,
    )
