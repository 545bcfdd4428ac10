"""A mapping spec's conversions are worked out once and shared by every mapper of it;
a copy of the spec with other fields (``model_copy`` shares the cache) gets its own."""

from __future__ import annotations

from hub.mapping.mapper import _MISSING, Mapper, set_path
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_specs
from hub.mapping.transforms import REGISTRY, load_code_lists, none_safe_original


def _pim_product() -> MappingSpec:
    return next(s for s in load_specs() if (s.system, s.entity) == ("pim", "product"))


def test_mappers_of_one_spec_share_its_steps_and_copies_with_other_fields_do_not() -> None:
    spec = _pim_product()
    codes = load_code_lists(MAPPINGS_DIR)
    native = {"identifier": "SKU-1", "values": {}}
    first, second = Mapper(spec, codes), Mapper(spec, codes)
    first.to_canonical(native)
    assert first._steps(first._plan.plain, True) is second._steps(second._plan.plain, True)

    fields = {k: v for k, v in spec.fields.items() if k != "sku"}
    narrower = spec.model_copy(update={"fields": fields})
    mapper = Mapper(narrower, codes)
    assert "sku" not in mapper.to_canonical(native)
    assert "sku" not in mapper.writable_fields
    assert "sku" in Mapper(spec, codes).to_canonical(native)


def test_a_field_of_one_none_safe_transform_is_converted_without_the_wrapper() -> None:
    """The mapper calls a lone None-safe transform itself (skipping None), and every other
    chain as registered: a transform that is not None-safe still sees None."""
    trim_in = REGISTRY["trim"][0]
    assert none_safe_original(trim_in) is not None
    assert none_safe_original(trim_in) is not trim_in
    assert none_safe_original(REGISTRY["akeneo_value"][0]) is None
    assert none_safe_original(REGISTRY["dunning_history"][0]) is None

    spec = _pim_product()
    codes = load_code_lists(MAPPINGS_DIR)
    mapper = Mapper(spec, codes)
    steps = mapper._steps(mapper._plan.plain, True)
    lone = [s for s in steps if len(s.functions) == 1 and none_safe_original(s.functions[0])]
    assert lone and all(s.single is none_safe_original(s.functions[0]) for s in lone)
    assert all(s.single is None for s in steps if s not in lone)
    # the same record converts alike through either path
    native = {"identifier": " SKU-1 ", "enabled": None, "updated": None, "values": {}}
    assert mapper.to_canonical(native) == _by_the_registered_chains(mapper, native)


def _by_the_registered_chains(mapper: Mapper, native: dict) -> dict:
    """``native`` converted by each step's registered (None-safe) functions in turn."""
    out: dict = {}
    for step in mapper._steps(mapper._plan.plain, True):
        value = step.read(native)
        if value is _MISSING:
            continue
        for fn in step.functions:
            value = fn(value, mapper._context(step.fmap, None))
        set_path(out, step.target, value)
    return out
