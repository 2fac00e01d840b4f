"""Every target's typed build options: validated from a mapping (one-line errors naming the key and the target),
parsed from text (``--option KEY=VALUE``), and written to the sidecar keys artifacts have always held."""
import pytest

from compressor.targets.options import TargetOptionError
from compressor.targets.table import TARGETS, options_class


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_declares_frozen_options_with_defaults(name):
    cls = options_class(name)
    assert cls.target == name and cls.keys()
    defaults = cls()
    with pytest.raises(AttributeError):
        setattr(defaults, cls.keys()[0], None)
    assert cls.from_mapping(defaults.to_dict()) == defaults == cls.from_mapping(None)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_unknown_key_names_the_target_and_its_options(name):
    cls = options_class(name)
    with pytest.raises(TargetOptionError) as caught:
        cls.from_mapping({"no_such_option": 1})
    message = str(caught.value)
    assert message == (f"option 'no_such_option' does not apply to target {name} "
                       f"(its options: {', '.join(cls.keys())})")
    assert "\n" not in message and caught.value.key == "no_such_option"


def test_another_targets_key_and_did_you_mean():
    with pytest.raises(TargetOptionError, match=r"^option 'static_shapes' does not apply to target onnxruntime "
                                                r"\(its options: provider, quantizer\)$"):
        options_class("onnxruntime").from_mapping({"static_shapes": True})
    with pytest.raises(TargetOptionError, match=r"did you mean 'static_shapes'\?"):
        options_class("openvino").from_mapping({"static_shape": True})


def test_wrong_type_and_bad_choice():
    openvino, tensorrt = options_class("openvino"), options_class("tensorrt")
    with pytest.raises(TargetOptionError, match="option 'static_shapes' of target openvino: expected a boolean, "
                                                "got text 'yes'"):
        openvino.from_mapping({"static_shapes": "yes"})
    with pytest.raises(TargetOptionError) as caught:
        openvino.from_mapping({"quantizer": "nncff"})
    assert caught.value.problem == "'nncff' is not one of qdq, nncf (did you mean 'nncf'?)"
    with pytest.raises(TargetOptionError, match="max_batch' of target tensorrt: expected an integer, got a boolean"):
        tensorrt.from_mapping({"max_batch": True})
    with pytest.raises(TargetOptionError, match="max_batch' of target tensorrt: must be at least 1"):
        tensorrt.from_mapping({"max_batch": 0})
    with pytest.raises(TargetOptionError, match="'sometimes' is not one of qdq, implicit"):
        tensorrt.from_mapping({"calibration": "sometimes"})


def test_text_values_are_parsed_to_the_field_type():
    openvino, tensorrt = options_class("openvino"), options_class("tensorrt")
    assert openvino.from_mapping({"static_shapes": "true", "quantizer": "nncf"}, from_text=True) == \
        openvino(quantizer="nncf", static_shapes=True)
    assert openvino.from_mapping({"static_shapes": "off"}, from_text=True).static_shapes is False
    assert tensorrt.from_mapping({"max_batch": "8"}, from_text=True).max_batch == 8
    with pytest.raises(TargetOptionError, match=r"expected a boolean \(true or false\), got 'maybe'"):
        openvino.from_mapping({"static_shapes": "maybe"}, from_text=True)
    with pytest.raises(TargetOptionError, match="expected an integer, got 'four'"):
        tensorrt.from_mapping({"max_batch": "four"}, from_text=True)


def test_sidecars_hold_the_keys_they_always_held():
    assert options_class("onnxruntime")().to_sidecar() == {"provider": "auto"}
    assert options_class("onnxruntime")(provider="cuda").to_sidecar() == {"provider": "cuda"}
    openvino = options_class("openvino")
    assert openvino(quantizer="nncf").to_sidecar() == {}
    assert openvino(static_shapes=True, float_layers="bf16").to_sidecar() == {"static_shapes": True,
                                                                               "float_layers": "bf16"}
    assert options_class("tensorrt")(calibration="implicit", max_batch=8).to_sidecar() == {}


def test_options_of_another_target_are_refused():
    with pytest.raises(TargetOptionError, match="target openvino cannot build with OnnxRuntimeOptions"):
        options_class("openvino").coerce(options_class("onnxruntime")())
