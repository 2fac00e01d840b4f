"""The starter recipe for your own teacher and student (``compress run --init NAME``), and the recipe that
``compress run --teacher SPEC --student SPEC --data DIR`` builds from the same defaults."""
from __future__ import annotations

from typing import Any

STARTER = """\
# {name}: distil your own teacher into your own student, then export, build, verify, profile and bundle it.
#   compress run {name}.yaml --quick      (a few minutes on a CPU)
# Relative paths are resolved against this file's folder when they exist there.
name: {name}
task: {task}                # classification (logits) or embedding (vectors compared with the teacher's)
description: {teacher} distilled into {student}
seed: 0

teacher:
  model: {teacher}          # file.py:factory, package.module:factory or a registered name (compress list models)
  args: {{}}                  # keyword arguments of the factory
  weights: null             # a state dict (.pt saved with torch.save(model.state_dict())) or .safetensors;
                            # without weights the teacher is trained with cross-entropy first (needs labels)
  train: {{iterations: 500, lr: 0.01, batch: 64}}   # iterations: 0 uses the teacher as its factory builds it

student:
  model: {student}          # give it input_specs (e.g. ["image:Nx3x32x32:float32:0..1"]) and output_names
  args: {{}}
  weights: null             # start the student (and the baseline) from these weights

data:
  source: {data}            # DIR/train/CLASS/*.png + DIR/val/CLASS/*.png, DIR/CLASS/*.png, a .npz (x, y,
                            # optional x_val, y_val) or module:function returning a Dataset or (x, y) samples
  val_fraction: 0.2         # held out (seeded) when the data has no validation split
  image_size: null          # [height, width] when the student declares no input size
  channels: null            # 1 (grey) or 3 (RGB) when the student declares none

distill:                    # the baseline is the same student, steps, data and seed with 'ce' only
  losses:                   # ce, or any registered loss (compress list losses); feature losses take
    - {{name: {soft_loss}}}  # layers: [[student.module.path, teacher.module.path]]
{hard_loss}  train: {{iterations: 500, lr: 0.01, batch: 64}}   # Adam, cosine decay; from pretrained weights: ~1e-4

metrics:
  function: null            # module:function(runner, data) -> dict of extra metrics (higher is better)
  headline: null            # the metric the report leads with and the INT8 gate guards ({headline} by default)

deploy:
  targets:
    - {{target: onnxruntime, precision: fp32}}
    - {{target: openvino, precision: fp32}}
    - {{target: onnxruntime, precision: int8}}
  int8_budget: 0.02         # headline drop allowed before layers are kept in float
  calibration_samples: 32   # training samples
  profile_seconds: 1.0

quick:                      # --quick: the same stages, shorter
  teacher: {{train: {{iterations: 150}}}}
  distill: {{train: {{iterations: 150}}}}
  deploy:
    targets:
      - {{target: onnxruntime, precision: fp32}}
      - {{target: onnxruntime, precision: int8}}
    profile_seconds: 0.3
    profile_iterations: 10
"""

KINDS = {"classification": {"soft_loss": "hinton, weight: 0.9, temperature: 4",
                            "hard_loss": "    - {name: ce, weight: 0.1}\n", "headline": "top1"},
         "embedding": {"soft_loss": "leaf, weight: 1.0", "hard_loss": "", "headline": "cosine"}}


def starter_recipe(name: str, *, task: str = "classification", teacher: str = "teacher.py:build",
                   student: str = "student.py:build", data: str = "data") -> str:
    """The commented starter recipe's text."""
    from compressor.distill.config import ConfigError

    if task not in KINDS:
        raise ConfigError(f"--task: '{task}' is not one of {', '.join(KINDS)}")
    teacher, student, data = (_scalar(v) for v in (teacher, student, data))
    return STARTER.format(name=name, task=task, teacher=teacher, student=student, data=data, **KINDS[task])


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it is a simple path or spec, else double-quoted."""
    import json
    import re

    return text if re.fullmatch(r"[A-Za-z0-9_./~+-][A-Za-z0-9_./:~+-]*", text) else json.dumps(text)


def starter_mapping(name: str, **values: Any) -> dict:
    """The starter recipe parsed (the defaults of ``compress run --teacher ... --student ... --data ...``)."""
    import yaml

    return yaml.safe_load(starter_recipe(name, **values))
