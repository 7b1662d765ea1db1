"""OpenOOD-style configuration: YAML files stacked left to right, ``--a.b value`` overrides, refs.

Same rules as OpenOOD v1.5's ``setup_config``: only ``.yml`` files; nested dicts merge leaf by leaf,
lists are replaced whole; an override must name a key that a file already declares; a value
``'@{a.b}'`` is replaced by the value at ``a.b`` (type kept), and ``'@{a.b}'`` inside a longer
string is substituted as text.

A config path that does not exist relative to the working directory is looked up in the configs
that ship with the package (:data:`CONFIGS_ROOT`), so ``configs/pipelines/train/moon.yml`` works
from any directory after a plain ``pip install``.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import yaml

DICT_METHOD_NAMES = frozenset(n for n in dir(dict) if not n.startswith("_"))
_REF = re.compile(r"'?@\{([A-Za-z0-9_.]+)\}'?")


def _configs_root(package_dir: str) -> str:
    """``<package>/configs`` (package data; in a checkout, a symlink to the repository's ``configs/``),
    or the repository's ``configs/`` itself where a checkout has no working symlink."""
    packaged = os.path.join(package_dir, "configs")
    return packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(package_dir), "configs")


CONFIGS_ROOT = _configs_root(os.path.dirname(os.path.abspath(__file__)))


class ConfigError(ValueError):
    """A configuration problem the user must fix; the message names it and the valid choices."""


def find_config(path: str) -> str:
    """``path`` itself when it exists (relative to the working directory), else the packaged copy:
    ``CONFIGS_ROOT/<path>``, with a leading ``configs/`` dropped (``configs/networks/x.yml`` ->
    ``CONFIGS_ROOT/networks/x.yml``). A missing file raises ``ConfigError`` saying where it looked."""
    if os.path.isfile(path):
        return path
    tried, parts = [os.path.abspath(path)], os.path.normpath(path).split(os.sep)
    if not os.path.isabs(path) and parts[0] != os.pardir:
        relative = [parts[1:]] if parts[0] == "configs" and len(parts) > 1 else []
        for rel in relative + [parts]:
            candidate = os.path.join(CONFIGS_ROOT, *rel)
            if os.path.isfile(candidate):
                return candidate
            tried.append(candidate)
    raise ConfigError(f"config file not found: {path!r} (looked for {', '.join(dict.fromkeys(tried))})")


def read_yaml(path: str) -> Dict[str, Any]:
    if not path.endswith(".yml"):
        raise ConfigError(f"config file {path!r}: only .yml files are accepted (as in OpenOOD)")
    path = find_config(path)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    _check_key_names(data, path)
    return data


def merge(base: Dict[str, Any], other: Dict[str, Any]) -> Dict[str, Any]:
    """Deep merge: dicts merge recursively, everything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(tokens: Sequence[str]) -> List[Tuple[str, str]]:
    """``['--a.b', '1', '--c=x']`` -> ``[('a.b', '1'), ('c', 'x')]``."""
    pairs, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}; overrides look like --key.sub value")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ConfigError(f"override {tok!r} has no value")
            key, value = tok[2:], tokens[i + 1]
            i += 2
        pairs.append((key, value))
    return pairs


def apply_override(cfg: Dict[str, Any], key: str, raw: str) -> None:
    """Set dotted ``key`` (which must exist) to ``raw`` parsed as YAML and checked against its type."""
    node, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:depth]) or "<top level>"
            valid = sorted(node) if isinstance(node, dict) else []
            hint = difflib.get_close_matches(part, valid, n=1)
            raise ConfigError(f"unknown config key {key!r}: no {part!r} under {where}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; valid keys there: {', '.join(valid) or '(none)'}")
        if depth < len(parts) - 1:
            node = node[part]
    raw, suffix = _split_type_suffix(raw)
    old = node[parts[-1]]
    value = raw if suffix == "str" else yaml.safe_load(raw)
    if isinstance(old, bool) and not isinstance(value, bool):
        raise ConfigError(f"--{key} expects true/false, got {raw!r}")
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, str) and not isinstance(value, str):
        value = raw
    if old is not None and not isinstance(old, str) and type(value) is not type(old):
        raise ConfigError(f"--{key} expects a {type(old).__name__}, got {raw!r}")
    node[parts[-1]] = value


def _split_type_suffix(raw: str):
    """OpenOOD's ``value:type`` form (``[1,2]:eval``, ``x:str``); the type is checked, not eval'd."""
    head, sep, tail = raw.rpartition(":")
    if sep and tail in ("eval", "str", "int", "float", "bool"):
        return head, tail
    return raw, None


def resolve_refs(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Replace ``'@{a.b}'`` references by the referenced values (repeated until stable)."""
    for _ in range(10):
        changed = False

        def walk(node):
            nonlocal changed
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str) and "@{" in node:
                whole = _REF.fullmatch(node.strip())
                if whole:
                    changed = True
                    return lookup(cfg, whole.group(1))
                new = _REF.sub(lambda m: str(lookup(cfg, m.group(1))), node)
                changed = changed or new != node
                return new
            return node

        cfg = walk(cfg)
        if not changed:
            return cfg
    raise ConfigError("config references do not resolve (a cycle of '@{...}' references?)")


def lookup(cfg: Dict[str, Any], key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config reference '@{{{key}}}' names a key that does not exist")
        node = node[part]
    return node


def load_config(paths: Iterable[str], overrides: Sequence[str] = (),
                base: Dict[str, Any] = None) -> Dict[str, Any]:
    """Merge ``base`` and the YAML ``paths`` left to right, apply CLI ``overrides``, resolve refs."""
    cfg = copy.deepcopy(base or {})
    for path in paths:
        cfg = merge(cfg, read_yaml(path))
    for key, raw in parse_overrides(list(overrides)):
        apply_override(cfg, key, raw)
    return resolve_refs(cfg)


def _check_key_names(node: Any, path: str, prefix: str = "") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in DICT_METHOD_NAMES:
                raise ConfigError(f"{path}: key {prefix + str(key)!r} shadows a dict method in "
                                  f"OpenOOD's Config; rename it")
            _check_key_names(value, path, f"{prefix}{key}.")
