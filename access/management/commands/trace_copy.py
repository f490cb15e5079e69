import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from access import services, tracing


class Command(BaseCommand):
    help = (
        "Trace a leaked copy of a marked release to the people whose codewords explain it. Give a directory (its "
        "files are hashed, and safetensors files whose hash matches no variant are read by their values), a "
        "SHA256SUMS file or the portal's JSON manifest (hashes only). Audited; prints the result (--json: as JSON)."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="a directory, a SHA256SUMS file or a JSON manifest")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, source, json: bool = False, **options):
        path = Path(source)
        hashes, files = [], []
        if path.is_dir():
            files = [(str(p.relative_to(path)), p) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise CommandError(f"{source}: not a SHA256SUMS file or manifest ({exc})") from exc
            try:
                hashes = services.manifest_entries(text)
            except services.ServiceError as exc:
                raise CommandError(str(exc)) from exc
        else:
            raise CommandError(f"{source}: no such file or directory")
        try:
            result = services.copy_trace(
                actor=services.command_actor("trace_copy"), hashes=hashes, files=files, source=str(path)
            )
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            self.stdout.write(_dumps(result.as_dict()))
            return
        self.stdout.write(describe(result))


def _dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def describe(result: tracing.Trace) -> str:
    d = result.as_dict()
    lines = [f"release: {d['release'] or '-'} @ {d['revision'] or '-'}"]
    for f in d["files"]:
        lines.append(f"  {f['name']}: {f['state']}" + (f" ({f['path']}, by {f['how']})" if f["path"] else ""))
    lines.append(f"marked files read: {d['observed']} of {d['marked_files']}; holders compared: {d['holders']}")
    if d["status"] == "match":
        for c in d["candidates"]:
            where = [f"grant {g['id']}" for g in c["grants"]] + [f"seat {s['id']} ({s['lab']})" for s in c["seats"]]
            lines.append(
                f"MATCH {c['user']}: {c['agree']} of {c['observed']} marked files agree; chance an "
                f"innocent holder agrees as well: {c['chance']:.3g}" + (f"; {', '.join(where)}" if where else "")
            )
    elif d["status"] == "no_confident_match":
        closest = d["closest"]
        lines.append(
            "no confident match"
            + (
                f": the closest holder agrees on {closest['agree']} of {closest['observed']} "
                f"(an innocent holder would as well with chance {closest['chance']:.3g}; a name needs < 1e-06)"
                if closest
                else ": no holder to compare"
            )
        )
    elif d["status"] == "unmarked":
        lines.append(f"an unmarked copy of {d['release']}: no marked file was read; it names no one")
    else:
        lines.append("a foreign copy: no file is of a release of this portal")
    return "\n".join(lines)
