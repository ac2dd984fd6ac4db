"""The published tool list, kept on disk between starts.

Building it is pydantic making an argument model and a JSON schema for each of ~44 tools (~55 ms,
most of the start-up left after the SDK's own import), and what it says depends only on the code:
this package's source files, the SDK and pydantic, and the toolsets enabled. So the compact list is
written once per fingerprint of those and read back at the next start, and each tool's argument
model is built when the tool is first called. A missing, damaged or older file means building
afresh and writing it again (atomically); a home that cannot be written just builds every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import mcp
import pydantic
import pydantic_core
from mcp.types import Tool as MCPTool

from heablcoin_mcp import __version__

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]


def fingerprint(toolsets: Sequence[str], package: Path = PACKAGE) -> str:
    """Changes when any source file of the package, the SDK or pydantic changes (an edit, an
    upgrade, a reinstall: each rewrites files), or another set of toolsets is enabled."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{__version__} {pydantic.VERSION} {','.join(toolsets)}".encode())
    libraries = [mcp.__file__, pydantic.__file__, pydantic_core.__file__]
    sources = sorted(os.path.join(folder, name) for folder, _, names in os.walk(package)
                     for name in names if name.endswith(".py"))
    for path in libraries + sources:
        stat = os.stat(path)  # type: ignore[arg-type]
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Catalogue:
    def __init__(self, path: Path, toolsets: Sequence[str]) -> None:
        self.path = path
        self.key = fingerprint(toolsets)

    def read(self, names: list[str]) -> list[MCPTool] | None:
        """The kept list, if it was written for this code and lists exactly these tools."""
        try:
            kept = json.loads(self.path.read_text())
            if kept.get("fingerprint") != self.key or [t.get("name") for t in kept["tools"]] != names:
                return None
            return [MCPTool.model_validate(tool) for tool in kept["tools"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("tool list at %s not used (%s): building it", self.path, type(exc).__name__)
            return None

    def write(self, tools: list[MCPTool]) -> None:
        body = {"fingerprint": self.key,
                "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]}
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(body, separators=(",", ":")))
            os.replace(partial, self.path)  # readers see the old file or the new one, never half
        except OSError as exc:
            log.info("tool list not kept at %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
