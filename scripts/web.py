"""The web app (clients/web): build the committed output Envoy serves, or check it is current.

python scripts/web.py build   # npm ci (when node_modules is missing), type-check, then vite build
                              #   into edge_proxy/webapp/ (emptied first)
python scripts/web.py check   # build into a temporary folder; fail, listing the files, when
                              #   edge_proxy/webapp/ differs from it (a stale committed build)

The app depends on the TypeScript SDK (clients/typescript, `file:../typescript`): its packages are
installed and its dist/ built first. The same sources and package-lock.json give the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "clients" / "web"
SDK = ROOT / "clients" / "typescript"
OUT = ROOT / "edge_proxy" / "webapp"


def _run(command: list[str], cwd: Path) -> None:
    print("+", " ".join(command), f"(in {cwd.relative_to(ROOT)})", flush=True)
    env = {**os.environ, "NO_COLOR": "1", "npm_config_fund": "false", "npm_config_audit": "false"}
    subprocess.run(command, cwd=cwd, env=env, check=True)


def _uses_sdk() -> bool:
    package = json.loads((WEB / "package.json").read_text())
    return str(package.get("dependencies", {}).get("@chirp/sdk", "")).startswith("file:")


def _install() -> None:
    if _uses_sdk():
        if not (SDK / "node_modules").is_dir():
            _run(["npm", "ci"], SDK)
        _run(["npm", "run", "build"], SDK)
    if not (WEB / "node_modules").is_dir():
        _run(["npm", "ci"], WEB)


def build(out: Path) -> None:
    """Type-check the app and write its production build into `out` (emptied first)."""
    _install()
    bin_dir = WEB / "node_modules" / ".bin"
    _run([str(bin_dir / "tsc"), "--noEmit", "-p", "."], WEB)
    _run([str(bin_dir / "vite"), "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"], WEB)


def _files(root: Path) -> set[str]:
    return (
        {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()
    )


def differences(expected: Path, actual: Path) -> list[str]:
    """Lines naming each file that is missing, extra or different in `actual`."""
    want, have = _files(expected), _files(actual)
    lines = [f"missing: {name}" for name in sorted(want - have)]
    lines += [f"not in the build: {name}" for name in sorted(have - want)]
    lines += [
        f"differs: {name}"
        for name in sorted(want & have)
        if not filecmp.cmp(expected / name, actual / name, shallow=False)
    ]
    return lines


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="chirp-web-") as tmp:
        fresh = Path(tmp) / "webapp"
        build(fresh)
        problems = differences(fresh, OUT)
    if problems:
        print(
            f"{OUT.relative_to(ROOT)} is stale; run `python scripts/web.py build` and commit it:",
            file=sys.stderr,
        )
        for line in problems:
            print("  " + line, file=sys.stderr)
        return 1
    print(f"{OUT.relative_to(ROOT)} is up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("build", "check"))
    args = parser.parse_args(argv)
    if shutil.which("npm") is None:
        print("npm is not on PATH: install Node.js 20 or newer", file=sys.stderr)
        return 2
    try:
        if args.command == "build":
            build(OUT)
            print(f"built {OUT.relative_to(ROOT)}/: {', '.join(sorted(_files(OUT)))}")
            return 0
        return check()
    except subprocess.CalledProcessError as error:
        print(f"failed: {' '.join(map(str, error.cmd))} (exit {error.returncode})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
