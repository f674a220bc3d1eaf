"""construct.yaml (conda constructor's format) loaded and validated for a linux-64 ``.sh``
installer: selectors, key names, types, required keys, match specs."""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.channel import channel_url
from dxforge.util import DxError

PLATFORM = "linux-64"

# Every key of constructor's CONSTRUCT.md (3.16), deprecated ones included.
CONSTRUCTOR_KEYS = frozenset(
    """
    $schema name version installer_filename installer_type license_file company
    reverse_domain_identifier uninstall_name build_outputs
    channels channels_remap mirrored_channels specs user_requested_specs virtual_specs exclude
    environment environment_file extra_envs menu_packages ignore_duplicate_files
    transmute_file_type install_in_dependency_order attempt_hardlinks
    write_condarc condarc conda_default_channels conda_channel_alias register_envs freeze_base
    keep_pkgs extra_files temp_extra_files
    batch_mode default_prefix default_prefix_domain_user default_prefix_all_users
    default_location_pkg pkg_domains pkg_name install_path_exists_error_text check_path_spaces
    check_path_length initialize_conda initialize_by_default register_python
    register_python_default uninstall_with_conda_exe
    pre_install pre_install_desc post_install post_install_desc pre_uninstall
    script_env_variables
    signing_identity_name notarization_identity_name windows_signing_tool signing_certificate
    welcome_image header_image icon_image default_image_color welcome_image_text
    header_image_text nsis_template welcome_file welcome_text readme_file readme_text
    post_install_pages conclusion_file conclusion_text progress_notifications
    docker_base_image docker_tag docker_labels docker_image_format
    """.split()
)

# key -> (accepted python types, short description used in errors)
SUPPORTED: dict[str, tuple[tuple[type, ...], str]] = {
    "$schema": ((str,), "a string"),
    "name": ((str,), "a string"),
    "version": ((str, int), "a string"),
    "channels": ((list,), "a list of channel names, URLs or paths"),
    "specs": ((list,), "a list of match specs"),
    "exclude": ((list,), "a list of package names"),
    "post_install": ((str,), "a path relative to construct.yaml"),
    "default_prefix": ((str,), "a string"),
    "batch_mode": ((bool,), "true or false"),
    "register_envs": ((bool,), "false"),
    "write_condarc": ((bool,), "true or false"),
    "conda_default_channels": ((list,), "a list of channel names"),
    "license_file": ((str,), "a path relative to construct.yaml"),
    "installer_filename": ((str,), "a file name ending in .sh"),
    "installer_type": ((str,), "sh"),
    "keep_pkgs": ((bool,), "false"),
    "transmute_file_type": ((str,), "'.conda'"),
    "ignore_duplicate_files": ((bool,), "true or false"),
    "script_env_variables": ((dict,), "a mapping of NAME: value"),
    "install_path_exists_error_text": ((str,), "a string"),
    "check_path_spaces": ((bool,), "true"),
    "company": ((str,), "a string"),
    "virtual_specs": ((list,), "a list of virtual package specs such as `__glibc >=2.31`"),
}
REQUIRED = ("name", "version", "channels", "specs")
ALL_KEYS = CONSTRUCTOR_KEYS | SUPPORTED.keys()

_SEL = re.compile(r"(.+?)\s*(#.*)?\[([^\[\]]+)\](?(2)[^\(\)]*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")
_ENVVAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# default_prefix is expanded by the installer's shell: allow $VAR and ${VAR}, nothing else.
_PREFIX_TEMPLATE = re.compile(
    r"^(?:[A-Za-z0-9/._+@%,=-]|\$\{[A-Za-z_][A-Za-z0-9_]*\}|"
    r"\$[A-Za-z_][A-Za-z0-9_]*)+$"
)


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
    batch_mode: bool = True
    write_condarc: bool = False
    conda_default_channels: list[str] = field(default_factory=list)
    license_file: Path | None = None
    installer_filename: str = ""
    script_env_variables: dict[str, str] = field(default_factory=dict)
    install_path_exists_error_text: str = ""
    ignore_duplicate_files: bool = False
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    """Package names listed more than once in specs (all entries go to the solver)."""
    virtual_specs: list[str] = field(default_factory=list)
    glibc: str | None = None
    """The glibc floor virtual_specs declares (``__glibc >=X``)."""

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


def load_construct(path: Path | str, platform: str = PLATFORM) -> ConstructSpec:
    """Read and validate ``path``; every error names the file, the line and the fix."""
    from rattler import MatchSpec
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DxError(
            f"{path}: no such file; write a construct.yaml (see the one at the top "
            "of the dxforge repository) or pass its path"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DxError(f"{path}: cannot read it ({e})") from None
    if "{{" in text or "{%" in text:
        line = next(i for i, s in enumerate(text.splitlines(), 1) if "{{" in s or "{%" in s)
        raise DxError(
            f"{path}:{line}: jinja templating is not supported by dxforge; "
            "write the value literally"
        )
    text = select_lines(text, path, platform)
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise DxError(f"{where}: not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(data, dict):
        raise DxError(
            f"{path}: expected a mapping of constructor keys (name, version, channels, specs, ...)"
        )

    lines = {str(k): _line_of(data, k) or 0 for k in data}

    def at(key: str) -> str:
        return f"{path}:{lines[key]}" if lines.get(key) else str(path)

    for key in data:
        key = str(key)
        if key in SUPPORTED:
            continue
        if key in CONSTRUCTOR_KEYS:
            raise DxError(
                f"{at(key)}: `{key}` is a constructor key that dxforge does not "
                "support; remove it (supported: "
                f"{', '.join(k for k in SUPPORTED if k != '$schema')})"
            )
        near = difflib.get_close_matches(key, sorted(ALL_KEYS), n=1, cutoff=0.6)
        hint = f"did you mean `{near[0]}`?" if near else "remove it"
        raise DxError(f"{at(key)}: unknown key `{key}`; {hint}")

    values = {str(k): v for k, v in data.items() if v is not None}  # constructor drops nulls
    for key in REQUIRED:
        if key not in values:
            raise DxError(f"{path}: required key `{key}` is missing; add `{key}: ...`")
    for key, value in values.items():
        types, desc = SUPPORTED[key]
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            got = type(value).__name__
            fix = " (quote it)" if key == "version" and isinstance(value, float) else ""
            raise DxError(f"{at(key)}: `{key}` must be {desc}, not {got}{fix}")

    def str_list(key: str, nonempty: bool = False) -> list[str]:
        seq = values.get(key, [])
        if nonempty and not seq:
            raise DxError(f"{at(key)}: `{key}` is empty; list at least one entry")
        out = []
        for i, item in enumerate(seq):
            if not isinstance(item, str) or not item.strip():
                line = _item_line(seq, i) or lines.get(key)
                raise DxError(
                    f"{path}:{line}: entry {i + 1} of `{key}` must be a non-empty "
                    f"string, not {item!r}"
                )
            out.append(item.strip())
        return out

    name = values["name"]
    if not _NAME.match(name):
        raise DxError(f"{at('name')}: name `{name}` may only use letters, digits, `.`, `_` and `-`")
    version = str(values["version"])
    if not _VERSION.match(version):
        raise DxError(
            f"{at('version')}: version `{version}` may only use letters, digits and `._+!-`"
        )

    specs = str_list("specs", nonempty=True)
    seq = values["specs"]
    seen: set[str] = set()
    duplicates: list[str] = []
    for i, s in enumerate(specs):
        line = _item_line(seq, i) or lines["specs"]
        try:
            ms = MatchSpec(s)
        except Exception as e:  # rattler raises its own exception types
            raise DxError(
                f"{path}:{line}: `{s}` is not a valid match spec ({e}); write it "
                "like `python 3.11.*` or `diracx ==0.7.0`"
            ) from None
        n = ms.name.normalized
        if n in seen and n not in duplicates:
            duplicates.append(n)
        seen.add(n)
    virtual = str_list("virtual_specs")
    glibc = None
    vseq = values.get("virtual_specs", [])
    for i, v in enumerate(virtual):
        line = _item_line(vseq, i) or lines.get("virtual_specs")
        m = re.fullmatch(r"(__[a-z0-9_]+)\s*(.*)", v)
        if not m:
            raise DxError(
                f"{path}:{line}: `{v}`: a virtual spec names a virtual package, starting with "
                "`__` (like `__glibc >=2.31`)"
            )
        if m[1] == "__glibc":
            g = re.fullmatch(r">=\s*(\d+(?:\.\d+)*)", m[2].strip())
            if not g:
                raise DxError(
                    f"{path}:{line}: `{v}`: only `>=` is allowed for __glibc (as constructor "
                    "does); write `__glibc >=2.31`"
                )
            glibc = g[1]
    channels = str_list("channels", nonempty=True)
    exclude = str_list("exclude")
    default_channels = str_list("conda_default_channels")

    def existing_file(key: str) -> Path | None:
        if key not in values:
            return None
        p = (path.parent / values[key]).resolve()
        if not p.is_file():
            raise DxError(
                f"{at(key)}: `{key}` names {p}, which is not a file; fix the path "
                "(it is relative to construct.yaml)"
            )
        return p

    post_install = existing_file("post_install")
    license_file = existing_file("license_file")

    default_prefix = values.get("default_prefix", "${PWD}/" + name.lower())
    if not _PREFIX_TEMPLATE.match(default_prefix):
        raise DxError(
            f"{at('default_prefix')}: default_prefix `{default_prefix}` may use "
            "letters, digits, `/._+@%,=-` and $VAR or ${VAR}, nothing else (no "
            "blanks, quotes or command substitution)"
        )

    filename = values.get("installer_filename", f"{name}-{version}-Linux-x86_64.sh")
    if "/" in filename or not filename.endswith(".sh") or not _NAME.match(filename):
        raise DxError(
            f"{at('installer_filename')}: installer_filename `{filename}` must be a "
            "plain file name ending in .sh (letters, digits, `._-`)"
        )

    def require(key: str, ok: bool, fix: str) -> None:
        if key in values and not ok:
            v = values[key]
            shown = str(v).lower() if isinstance(v, bool) else v
            raise DxError(f"{at(key)}: `{key}: {shown}` is not supported; {fix}")

    require(
        "installer_type",
        values.get("installer_type") == "sh",
        "dxforge builds `sh` installers only",
    )
    require(
        "register_envs",
        values.get("register_envs") is False,
        "dxforge installers never register environments; set `register_envs: false`",
    )
    require(
        "keep_pkgs",
        values.get("keep_pkgs") is False,
        "dxforge installers ship an installed prefix, not packages; set `keep_pkgs: false`",
    )
    require(
        "transmute_file_type",
        values.get("transmute_file_type") == ".conda",
        "use `.conda` or remove the key",
    )
    require(
        "check_path_spaces",
        values.get("check_path_spaces") is True,
        "dxforge installers always refuse prefixes with blanks; remove the key",
    )

    env = values.get("script_env_variables", {})
    script_env: dict[str, str] = {}
    for k, v in env.items():
        if not isinstance(k, str) or not _ENVVAR.match(k):
            raise DxError(
                f"{at('script_env_variables')}: `{k}` is not a valid environment variable name"
            )
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise DxError(f"{at('script_env_variables')}: value of `{k}` must be a string")
        script_env[k] = str(v)

    text_exists = values.get("install_path_exists_error_text", "")
    if '"' in text_exists or "\n" in text_exists:
        raise DxError(
            f"{at('install_path_exists_error_text')}: the text may not contain "
            "double quotes or newlines"
        )

    return ConstructSpec(
        path=path,
        name=name,
        version=version,
        channels=channels,
        specs=specs,
        exclude=exclude,
        post_install=post_install,
        default_prefix=default_prefix,
        batch_mode=values.get("batch_mode", False),
        write_condarc=values.get("write_condarc", False),
        conda_default_channels=default_channels,
        license_file=license_file,
        installer_filename=filename,
        script_env_variables=script_env,
        install_path_exists_error_text=text_exists,
        ignore_duplicate_files=values.get("ignore_duplicate_files", False),
        lines=lines,
        duplicates=duplicates,
        virtual_specs=virtual,
        glibc=glibc,
    )
