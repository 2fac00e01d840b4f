"""``compress bundle ARTIFACT --out DIR``, ``compress bundle verify BUNDLE`` and ``compress bundle keygen``."""
from __future__ import annotations

import click

from compressor.cli.options import DURATION, artifact_argument, emit, json_option

SIGN_KEY_HELP = ("Sign the manifest with this Ed25519 private key (from 'compress bundle keygen'); default: the file "
                 "named by EDGE_COMPRESS_SIGNING_KEY, else unsigned.")


class DefaultCommandGroup(click.Group):
    """A group that runs its ``create`` command when the first word is not a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup, invoke_without_command=False)
def bundle() -> None:
    """Write a deployment bundle (compress bundle ARTIFACT --out DIR), check one (compress bundle verify BUNDLE)
    or make the key pair that signs them (compress bundle keygen --out DIR)."""


def _identity_text(digest: str, signed_by: str | None) -> str:
    if signed_by:
        return f"identity {digest}\nsigned by key {signed_by}: check it with 'compress bundle verify " \
               f"BUNDLE --key PUBLIC_KEY'"
    return (f"identity {digest} (unsigned: keep this digest and compare it when you verify, "
            f"or sign with --sign-key / EDGE_COMPRESS_SIGNING_KEY)")


@bundle.command("create")
@artifact_argument()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", default=None,
              help="Bundle name: a plain folder name inside --out (default: <artifact>-<target>).")
@click.option("--profile-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Include this 'compress profile --json' result instead of profiling now.")
@click.option("--duration", "duration_s", type=DURATION, default=1.0, show_default=True,
              help="Minimum seconds of the profile taken for the bundle.")
@click.option("--jetson", is_flag=True,
              help="A Jetson bundle from an exported ONNX: the engine is built on the device.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="--jetson only: engine precision.")
@click.option("--calibration", default=None, help="--jetson int8 only: calibration source (as for compress build).")
@click.option("--sign-key", type=click.Path(dir_okay=False), default=None, help=SIGN_KEY_HELP)
@json_option
def create(artifact, out_dir, name, profile_json, duration_s, jetson, precision, calibration, sign_key,
           as_json) -> None:
    """Bundle ARTIFACT: model files, golden inputs/outputs, profile, manifest and a standalone run.py.

    Prints the bundle's identity (the sha256 of its manifest); with a signing key the manifest is also
    signed (manifest.sig), so 'compress bundle verify --key' can prove the bundle is the one made here.
    """
    import json
    from pathlib import Path

    from compressor.core.errors import ArtifactError
    from compressor.core.files import ensure_writable_dir
    from compressor.targets.base import Artifact
    from compressor.targets.bundle import check_bundle_name, create_bundle
    from compressor.targets.profile import ProfileOptions
    from compressor.targets.signing import resolve_signing_key

    if name is not None:
        check_bundle_name(name)
    key = resolve_signing_key(sign_key)
    loaded = Artifact.load(artifact)
    folder = ensure_writable_dir(out_dir)
    if jetson:
        from compressor.cli.build_cmd import load_calibration
        from compressor.targets.jetson import create_jetson_bundle

        if loaded.target != "onnx":
            raise ArtifactError("--jetson takes the exported ONNX (from 'compress export'), not a built engine")
        feeds = load_calibration(calibration, str(loaded.path), 32) if calibration else None
        result = create_jetson_bundle(loaded, folder, precision=precision, calibration=feeds, name=name,
                                      signing_key=key)
        emit({"folder": str(result.folder), "archive": str(result.archive), "digest": result.digest,
              "signed_by": result.signed_by}, as_json,
             f"jetson bundle {result.archive}\n{_identity_text(result.digest, result.signed_by)}\n"
             f"on the device: python jetson.py build && python jetson.py profile\n"
             f"then here:    compress report RUN_DIR --device-profile profile.json")
        return
    try:
        profile = json.loads(Path(profile_json).read_text()) if profile_json else None
    except (ValueError, OSError):
        raise ArtifactError(f"{profile_json} is not valid JSON") from None
    if profile is not None and not isinstance(profile, dict):
        raise ArtifactError(f"{profile_json} is not a 'compress profile --json' result (not a JSON object)")
    result = create_bundle(loaded, folder, name=name, profile=profile,
                           profile_options=ProfileOptions(min_iterations=20, min_duration_s=duration_s),
                           signing_key=key)
    emit({"folder": str(result.folder), "archive": str(result.archive), "digest": result.digest,
          "signed_by": result.signed_by}, as_json,
         f"bundle {result.folder}\narchive {result.archive}\n{_identity_text(result.digest, result.signed_by)}\n"
         f"next:   compress bundle verify {result.archive}" + (" --key PUBLIC_KEY" if result.signed_by else
                                                                f" --digest {result.digest}"))


@bundle.command("verify")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option("--key", "public_key", type=click.Path(dir_okay=False), default=None,
              help="Ed25519 public key (.pub from 'compress bundle keygen'): refuse unless the bundle is signed by it.")
@click.option("--digest", "expected_digest", default=None,
              help="The identity printed when the bundle was made (sha256:...): refuse any other manifest.")
@click.option("--no-selftest", is_flag=True, help="Check files only; run none of the bundle's code.")
@click.option("--budget", "budget_text", default=None, metavar="KEY=N,...",
              help="Ceilings that gate CI, e.g. p99_ms=5,size_mb=4,metric_drop=0.1: latency from the bundle's "
                   "profile.json, size of its model files, metric drop from its selection.json (bundles made by "
                   "'compress run'); a broken budget exits 1 and names it.")
@json_option
def verify(bundle_path, public_key, expected_digest, no_selftest, budget_text, as_json) -> None:
    """Check BUNDLE (folder or .tar.gz) before running any of it, then run its self-test in an isolated Python.

    Refuses unsafe archives (links, paths outside, too many or too large members), any file the manifest
    does not list or lists but lacks, a wrong checksum or size, and a manifest that says what the toolchain
    never writes (self-test off, another tolerance, a model outside model/). With --key the manifest's
    signature must be that key's; without it the bundle's identity (sha256 of its manifest) is printed to
    compare with the one printed when it was made, and only runtime code identical to this toolchain's runs.
    """
    import sys

    from compressor.distill.budgets import check_bundle, parse_budget
    from compressor.targets.bundle import verify_bundle

    budget = parse_budget(budget_text)
    report = verify_bundle(bundle_path, run_selftest=not no_selftest, public_key=public_key,
                           expected_digest=expected_digest)
    checked = check_bundle(budget, bundle_path) if budget else None  # read only once the bundle is verified
    if checked is not None:
        report = {**report, "budget": checked.to_dict()}
    selftest = report.get("selftest")
    if report["signature"] == "verified":
        origin = f"signed by {report['signed_by']}: signature verified"
    elif expected_digest:
        origin = "matches the expected digest"
    elif report["signed_by"]:
        origin = f"signed by {report['signed_by']} but not checked: pass --key PUBLIC_KEY to verify its origin"
    else:
        origin = "unsigned: origin unverified; compare this digest with the one printed when the bundle was made"
    emit(report, as_json, f"ok: {report['files']} files match their checksums"
         + (f"; self-test passed (max abs {selftest['max_abs']})" if selftest else "")
         + (f"; {report['note']}" if report.get("note") else "")
         + (f"\nwarning: {', '.join(report['runtime_differs'])} differ(s) from this toolchain's runtime: trust it only "
            f"if this identity is the one printed when the bundle was made" if report.get("runtime_differs") else "")
         + f"\nidentity {report['digest']} ({origin})")
    if checked is not None:
        click.echo(checked.line(), err=as_json or not checked.passed)
        if not checked.passed:
            sys.exit(1)


@bundle.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the two key files.")
@click.option("--name", default="bundle-signing", show_default=True, help="File name stem of the keys.")
@json_option
def keygen(out_dir, name, as_json) -> None:
    """Make an Ed25519 key pair for signing bundles: OUT/NAME.key (private, mode 0600, unencrypted PKCS#8 PEM:
    keep it on the build machine, never in a bundle) and OUT/NAME.pub (public PEM: copy it to the devices).
    Existing key files are never overwritten. Sign with 'compress bundle ... --sign-key OUT/NAME.key' (or set
    EDGE_COMPRESS_SIGNING_KEY to it, which 'compress run' uses too); check with
    'compress bundle verify BUNDLE --key OUT/NAME.pub'."""
    from compressor.targets.signing import generate_keypair

    pair = generate_keypair(out_dir, name)
    emit({"private_key": str(pair.private), "public_key": str(pair.public), "fingerprint": pair.fingerprint},
         as_json, f"private key {pair.private} (keep it secret)\npublic key  {pair.public}\n"
                  f"fingerprint {pair.fingerprint}\n"
                  f"sign:   compress bundle ARTIFACT --out DIR --sign-key {pair.private}\n"
                  f"verify: compress bundle verify BUNDLE --key {pair.public}")
