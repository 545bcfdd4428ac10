"""A mapping spec's conversions are worked out once and shared by every mapper of it;
a copy of the spec with other fields (``model_copy`` shares the cache) gets its own."""

from __future__ import annotations

from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_specs
from hub.mapping.transforms import load_code_lists


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
