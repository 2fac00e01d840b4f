"""``compress bundle ARTIFACT --out DIR`` and ``compress bundle verify BUNDLE``."""
from __future__ import annotations

import click

from compressor.cli.options import artifact_argument, emit, json_option


class DefaultCommandGroup(click.Group):
    """A group that runs its ``create`` command when the first word is not a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup, invoke_without_command=False)
def bundle() -> None:
    """Write a deployment bundle (compress bundle ARTIFACT --out DIR) or check one (compress bundle verify BUNDLE)."""


@bundle.command("create")
@artifact_argument()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", default=None, help="Bundle name (default: <artifact>-<target>).")
@click.option("--profile-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Include this 'compress profile --json' result instead of profiling now.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of the profile taken for the bundle.")
@click.option("--jetson", is_flag=True, help="A Jetson bundle from an exported ONNX: the engine is built on the device.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="--jetson only: engine precision.")
@click.option("--calibration", default=None, help="--jetson int8 only: calibration source (as for compress build).")
@json_option
def create(artifact, out_dir, name, profile_json, duration_s, jetson, precision, calibration, as_json) -> None:
    """Bundle ARTIFACT: model files, golden inputs/outputs, profile, manifest and a standalone run.py."""
    import json
    from pathlib import Path

    from compressor.core.errors import ArtifactError
    from compressor.core.files import ensure_writable_dir
    from compressor.targets.base import Artifact
    from compressor.targets.bundle import create_bundle
    from compressor.targets.profile import ProfileOptions

    loaded = Artifact.load(artifact)
    folder = ensure_writable_dir(out_dir)
    if jetson:
        from compressor.cli.build_cmd import load_calibration
        from compressor.targets.jetson import create_jetson_bundle

        if loaded.target != "onnx":
            raise ArtifactError("--jetson takes the exported ONNX (from 'compress export'), not a built engine")
        feeds = load_calibration(calibration, str(loaded.path), 32) if calibration else None
        result = create_jetson_bundle(loaded, folder, precision=precision, calibration=feeds, name=name)
        emit({"folder": str(result.folder), "archive": str(result.archive)}, as_json,
             f"jetson bundle {result.archive}\non the device: python jetson.py build && python jetson.py profile\n"
             f"then here:    compress report RUN_DIR --device-profile profile.json")
        return
    try:
        profile = json.loads(Path(profile_json).read_text()) if profile_json else None
    except ValueError:
        raise ArtifactError(f"{profile_json} is not valid JSON") from None
    result = create_bundle(loaded, folder, name=name, profile=profile,
                           profile_options=ProfileOptions(min_iterations=20, min_duration_s=duration_s))
    emit({"folder": str(result.folder), "archive": str(result.archive)}, as_json,
         f"bundle {result.folder}\narchive {result.archive}\nnext:   compress bundle verify {result.archive}")


@bundle.command("verify")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option("--no-selftest", is_flag=True, help="Check checksums only.")
@json_option
def verify(bundle_path, no_selftest, as_json) -> None:
    """Check every checksum of BUNDLE (folder or .tar.gz), refuse unsafe archives, run its self-test."""
    from compressor.targets.bundle import verify_bundle

    report = verify_bundle(bundle_path, run_selftest=not no_selftest)
    selftest = report.get("selftest")
    emit(report, as_json, f"ok: {report['files']} files match their checksums"
         + (f"; self-test passed (max abs {selftest['max_abs']})" if selftest else "")
         + (f"; {report['note']}" if report.get("note") else ""))
