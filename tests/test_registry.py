import pytest
from pydantic import BaseModel, ConfigDict

from adamml_core.registry import (
    ComponentOptionsError,
    DuplicateComponentError,
    Origin,
    Registry,
    UnknownComponentError,
)


class WidthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 4


def make(options, **kwargs):
    """Builds a dict so tests can see what the factory received."""
    return {"width": options.width, **kwargs}


@pytest.fixture
def registry():
    reg = Registry("backbone")
    reg.register("resnet", make, origin=Origin("core-nets", "adamml 0.1"), options_model=WidthOptions)
    reg.register("mobilenet", make, origin=Origin("core-nets", "adamml 0.1"), description="light")
    return reg


def test_unknown_name_lists_known_and_suggests(registry):
    with pytest.raises(UnknownComponentError) as info:
        registry.get("resnt")
    msg = str(info.value)
    assert "unknown backbone 'resnt'" in msg
    assert "mobilenet, resnet" in msg
    assert "Did you mean 'resnet'?" in msg


def test_duplicate_names_both_origins(registry):
    with pytest.raises(DuplicateComponentError) as info:
        registry.register("resnet", make, origin=Origin("other-nets", "thirdparty 2.0"))
    msg = str(info.value)
    assert "core-nets (adamml 0.1)" in msg and "other-nets (thirdparty 2.0)" in msg


def test_entries_are_inspectable(registry):
    entries = {e.name: e for e in registry}
    assert list(entries) == ["mobilenet", "resnet"]
    assert entries["mobilenet"].description == "light"
    # the first docstring line is the default description
    assert entries["resnet"].description == "Builds a dict so tests can see what the factory received."
    assert entries["resnet"].origin.plugin == "core-nets"
    assert "resnet" in registry and "vgg" not in registry and len(registry) == 2


def test_build_validates_options_with_the_component_model(registry):
    assert registry.build("resnet", {"width": 8}, input_shape=(3,)) == {"width": 8, "input_shape": (3,)}
    with pytest.raises(ComponentOptionsError) as info:
        registry.build("resnet", {"width": "wide"}, field_path="recognition.rgb.backbone.options")
    assert "recognition.rgb.backbone.options.width" in str(info.value)
    with pytest.raises(ComponentOptionsError, match="depth"):
        registry.build("resnet", {"depth": 50})


def test_empty_registry_message_points_to_plugins():
    with pytest.raises(UnknownComponentError, match="no dataset is registered"):
        Registry("dataset").get("kinetics")


class LenientOptions(BaseModel):
    """A plugin's model that forgot extra="forbid" (pydantic's default ignores unknown keys)."""

    width: int = 4
    depth: int = 2


def test_an_options_typo_fails_even_when_the_plugin_model_ignores_extra_keys():
    reg = Registry("backbone")
    reg.register("lenient", make, origin=Origin("third", "thirdparty 1.0"), options_model=LenientOptions)
    assert reg.build("lenient", {"width": 8}) == {"width": 8}
    with pytest.raises(ComponentOptionsError) as info:
        reg.build("lenient", {"widht": 8}, field_path="recognition.rgb.backbone.options")
    msg = str(info.value)
    assert "recognition.rgb.backbone.options.widht: unknown option" in msg
    assert "depth, width" in msg  # names what the component does take


def test_a_component_without_options_rejects_any():
    reg = Registry("fusion method")
    reg.register("plain", make, origin=Origin("third"))
    with pytest.raises(ComponentOptionsError, match=r"fusion\.options\.weights: unknown option.*none"):
        reg.build("plain", {"weights": [1, 2]}, field_path="fusion.options")


def test_options_model_must_be_pydantic():
    with pytest.raises(TypeError, match="options_model must be a pydantic BaseModel"):
        Registry("backbone").register("odd", make, origin=Origin("third"), options_model=dict)
