"""namedarraytuple: index/assign across fields, nesting, None fields, errors, pickling, spawn."""

import copy
import multiprocessing
import operator
import pickle
import uuid

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlfleet.utils.buffers import dict_to_namedarraytuple
from rlfleet.utils.namedarraytuple import is_namedarraytuple, is_namedtuple, namedarraytuple

Triple = namedarraytuple("Triple", ["a", "b", "c"])
Inner = namedarraytuple("Inner", ["p", "q"])
Outer = namedarraytuple("Outer", ["inner", "r", "s"])


def _unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- basics


def test_class_creation_and_cache():
    assert namedarraytuple("Triple", ["a", "b", "c"]) is Triple
    assert namedarraytuple("Triple", "a, b c") is Triple
    other = namedarraytuple("Triple", ["a", "b"])
    assert other is not Triple and other._fields == ("a", "b")
    with pytest.raises(ValueError, match="reserved"):
        namedarraytuple("Bad", ["get", "x"])
    with pytest.raises(ValueError, match="reserved"):
        namedarraytuple("Bad", ["items"])


def test_attribute_access_and_integer_index_indexes_all_fields():
    a, b = np.arange(6).reshape(3, 2), torch.arange(3.0)
    x = Triple(a, b, None)
    assert x.a is a and x.b is b and x.c is None
    # Integer indexing is *not* field access: it indexes every field.
    y = x[1]
    assert isinstance(y, Triple)
    np.testing.assert_array_equal(y.a, [2, 3])
    assert y.b.item() == 1.0
    assert y.c is None
    z = x[-1]
    np.testing.assert_array_equal(z.a, [4, 5])
    assert z.b.item() == 2.0


def test_get_items_and_predicates():
    x = Triple(np.zeros(2), np.ones(2), None)
    assert x.get("b") is x.b
    assert x.get("missing", 42) == 42
    assert [name for name, _ in x.items()] == ["a", "b", "c"]
    assert is_namedarraytuple(x) and is_namedtuple(x)
    plain = Triple.__mro__[1](1, 2, 3)  # the collections.namedtuple base
    assert is_namedtuple(plain) and not is_namedarraytuple(plain)
    assert not is_namedarraytuple((1, 2, 3))


def test_slice_and_fancy_index_numpy_and_torch_fields():
    x = Triple(np.arange(10), torch.arange(10) * 2, None)
    y = x[2:8:3]
    np.testing.assert_array_equal(y.a, [2, 5])
    assert y.b.tolist() == [4, 10]
    idx = np.array([0, 9, 9])
    z = Triple(np.arange(10), np.arange(10) * 2, None)[idx]
    np.testing.assert_array_equal(z.a, [0, 9, 9])
    np.testing.assert_array_equal(z.b, [0, 18, 18])
    mask = np.arange(10) % 4 == 0
    w = Triple(np.arange(10), np.arange(10) + 100, None)[mask]
    np.testing.assert_array_equal(w.a, [0, 4, 8])
    np.testing.assert_array_equal(w.b, [100, 104, 108])


def test_setitem_with_instance_and_broadcast_value():
    x = Triple(np.zeros((4, 2)), torch.zeros(4), None)
    x[1] = Triple(np.array([1.0, 2.0]), torch.tensor(3.0), None)
    np.testing.assert_array_equal(x.a, [[0, 0], [1, 2], [0, 0], [0, 0]])
    assert x.b.tolist() == [0, 3, 0, 0]
    x[2:] = 7
    np.testing.assert_array_equal(x.a[2:], 7)
    assert x.b.tolist() == [0, 3, 7, 7]
    # A None item in the value leaves the field untouched.
    x[0] = Triple(np.array([5.0, 5.0]), None, None)
    np.testing.assert_array_equal(x.a[0], [5, 5])
    assert x.b[0].item() == 0
    # Assigning through a view writes into the original storage.
    view = x[1:3]
    view[0] = -1
    np.testing.assert_array_equal(x.a[1], [-1, -1])
    assert x.b[1].item() == -1


def test_setitem_rejects_instance_with_other_fields():
    x = Triple(np.zeros(3), np.zeros(3), np.zeros(3))
    Pair = namedarraytuple("Pair", ["a", "b"])
    with pytest.raises(ValueError, match="fields"):
        x[0] = Pair(1.0, 2.0)
    np.testing.assert_array_equal(x.a, 0)


# ---------------------------------------------------------------- nested / None


def test_nested_index_and_assign():
    x = Outer(Inner(np.arange(5), torch.arange(5.0).unsqueeze(-1).repeat(1, 3)), np.arange(5) * 10, None)
    y = x[1:4]
    assert isinstance(y.inner, Inner)
    np.testing.assert_array_equal(y.inner.p, [1, 2, 3])
    assert y.inner.q.shape == (3, 3) and y.inner.q[:, 0].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(y.r, [10, 20, 30])
    assert y.s is None

    x[0] = Outer(Inner(np.int64(100), torch.full((3,), -2.0)), np.int64(-5), None)
    assert x.inner.p[0] == 100
    assert x.inner.q[0].tolist() == [-2.0, -2.0, -2.0]
    assert x.r[0] == -5
    # Broadcast scalar reaches nested fields as well.
    x[4] = 9
    assert x.inner.p[4] == 9 and x.inner.q[4].tolist() == [9, 9, 9] and x.r[4] == 9


def test_none_inner_field_is_skipped():
    x = Outer(Inner(np.zeros(3), None), np.zeros(3), None)
    y = x[0]
    assert y.inner.q is None and y.s is None
    x[:] = 1.0
    np.testing.assert_array_equal(x.inner.p, 1.0)
    np.testing.assert_array_equal(x.r, 1.0)
    assert x.inner.q is None


# ---------------------------------------------------------------- error messages


def test_index_error_names_failing_field():
    x = Triple(np.zeros(5), np.zeros(3), None)
    with pytest.raises(IndexError, match=r"Triple\.b"):
        x[4]
    t = Triple(torch.zeros(5), torch.zeros(5), torch.zeros(2))
    with pytest.raises(IndexError, match=r"Triple\.c"):
        t[3]


def test_nested_index_error_names_path():
    x = Outer(Inner(np.zeros(4), np.zeros(2)), np.zeros(4), None)
    with pytest.raises(IndexError) as info:
        x[3]
    msg = str(info.value)
    assert "Outer.inner" in msg and "Inner.q" in msg


def test_assign_error_names_failing_field():
    x = Triple(np.zeros((4, 2)), np.zeros((4, 3)), None)
    with pytest.raises(ValueError, match=r"Triple\.b"):
        x[0] = Triple(np.ones(2), np.ones(5), None)
    t = Triple(torch.zeros(4, 2), torch.zeros(4, 3), None)
    with pytest.raises(RuntimeError, match=r"Triple\.b"):
        t[0] = Triple(torch.ones(2), torch.ones(5), None)


# ---------------------------------------------------------------- pickling


def test_pickle_and_copy_round_trip():
    x = Outer(Inner(np.arange(3), torch.arange(3.0)), np.ones((3, 2), np.float32), None)
    for y in (pickle.loads(pickle.dumps(x)), copy.deepcopy(x)):
        assert type(y) is Outer and type(y.inner) is Inner
        np.testing.assert_array_equal(y.inner.p, x.inner.p)
        assert torch.equal(y.inner.q, x.inner.q)
        np.testing.assert_array_equal(y.r, x.r)
        assert y.s is None
        assert y.r is not x.r  # by value
        np.testing.assert_array_equal(y[1].inner.p, 1)


def test_pickle_by_value_recreates_unknown_class():
    """Unpickling must not need the class object: simulate a fresh process by clearing the cache."""
    from rlfleet.utils import namedarraytuple as nat_module

    name = _unique("Runtime")
    cls = namedarraytuple(name, ["x", "y"])
    data = pickle.dumps(cls(np.arange(4), None))
    del nat_module._CLASS_CACHE[(name, ("x", "y"))]
    restored = pickle.loads(data)
    assert type(restored).__name__ == name and restored._fields == ("x", "y")
    assert type(restored) is not cls  # rebuilt from (name, fields), not looked up by reference
    np.testing.assert_array_equal(restored[1:3].x, [1, 2])
    assert restored.y is None


def test_spawn_round_trip_of_runtime_class():
    """A class made at run time (from a dict) survives the spawn start method both ways.

    The child runs ``operator.getitem(x, slice(1, 3))``, so it must rebuild the class, index every
    field with namedarraytuple semantics and send a new instance back.
    """
    name = _unique("SpawnObs")
    x = dict_to_namedarraytuple(
        name,
        {"pos": np.arange(8, dtype=np.float32).reshape(4, 2), "meta": {"id": np.arange(4), "flag": np.arange(4) > 1}},
    )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(operator.getitem, (x, slice(1, 3))).get(timeout=60)
        echoed = pool.apply_async(copy.copy, (x,)).get(timeout=60)
    assert type(result) is type(x)  # same (cached) class on return
    assert type(result.meta) is type(x.meta)
    assert result._fields == ("meta", "pos") and result.meta._fields == ("flag", "id")
    np.testing.assert_array_equal(result.pos, [[2, 3], [4, 5]])
    np.testing.assert_array_equal(result.meta.id, [1, 2])
    np.testing.assert_array_equal(result.meta.flag, [False, True])
    assert result.pos.dtype == np.float32
    np.testing.assert_array_equal(echoed.pos, x.pos)
    np.testing.assert_array_equal(echoed.meta.flag, x.meta.flag)


def test_dict_to_namedarraytuple_sorts_and_nests():
    x = dict_to_namedarraytuple("DObs", {"b": np.zeros(2), "a": {"z": np.ones(2), "y": None}})
    assert x._fields == ("a", "b")
    assert type(x.a).__name__ == "DObs_a" and x.a._fields == ("y", "z")
    assert x.a.y is None
    np.testing.assert_array_equal(x[1].a.z, 1.0)


# ---------------------------------------------------------------- property tests


@st.composite
def shape_and_loc(draw):
    """A leading shape and a basic index (ints, positive-step slices) valid for numpy and torch."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    n_idx = draw(st.integers(0, len(shape)))
    loc = []
    for n in shape[:n_idx]:
        if draw(st.booleans()):
            loc.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 2, n + 2)
            loc.append(slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3]))))
    return shape, tuple(loc) if len(loc) != 1 else loc[0]


def _make(shape, seed):
    rng = np.random.default_rng(seed)
    return Outer(
        Inner(rng.standard_normal(shape), torch.from_numpy(rng.standard_normal(shape + (2,)))),
        rng.integers(0, 100, size=shape),
        None,
    )


@settings(max_examples=60, deadline=None)
@given(shape_and_loc(), st.integers(0, 2**16))
def test_property_index_then_field_equals_field_then_index(shape_loc, seed):
    shape, loc = shape_loc
    x = _make(shape, seed)
    y = x[loc]
    np.testing.assert_array_equal(y.inner.p, x.inner.p[loc])
    assert torch.equal(y.inner.q, x.inner.q[loc])
    np.testing.assert_array_equal(y.r, x.r[loc])
    assert y.s is None


@settings(max_examples=60, deadline=None)
@given(shape_and_loc(), st.integers(0, 2**16))
def test_property_assignment_round_trip(shape_loc, seed):
    shape, loc = shape_loc
    x = _make(shape, seed)
    before = copy.deepcopy(x)
    target_shape = x.inner.p[loc].shape
    value = Outer(
        Inner(
            np.full(target_shape, 0.5) + np.arange(np.prod(target_shape)).reshape(target_shape),
            torch.full(target_shape + (2,), -3.0, dtype=torch.float64),
        ),
        np.full(target_shape, 1000),
        None,
    )
    x[loc] = value
    # Reading back what was written ...
    np.testing.assert_array_equal(x[loc].inner.p, value.inner.p)
    assert torch.equal(x[loc].inner.q, value.inner.q)
    np.testing.assert_array_equal(x[loc].r, value.r)
    # ... and nothing else changed: compare with a per-field reference assignment.
    ref_p, ref_q, ref_r = before.inner.p.copy(), before.inner.q.clone(), before.r.copy()
    ref_p[loc], ref_q[loc], ref_r[loc] = value.inner.p, value.inner.q, value.r
    np.testing.assert_array_equal(x.inner.p, ref_p)
    assert torch.equal(x.inner.q, ref_q)
    np.testing.assert_array_equal(x.r, ref_r)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)).flatmap(
        lambda arr: st.tuples(st.just(arr), hnp.basic_indices(arr.shape, allow_newaxis=True))
    )
)
def test_property_numpy_basic_indices_incl_negative_steps(arr_loc):
    """All numpy basic indices (negative steps, Ellipsis, newaxis) agree field by field."""
    arr, loc = arr_loc
    x = Triple(arr, arr * 2 + 1, None)
    y = x[loc]
    np.testing.assert_array_equal(y.a, arr[loc])
    np.testing.assert_array_equal(y.b, (arr * 2 + 1)[loc])
    x[loc] = Triple(np.zeros_like(arr[loc]), np.full_like(arr[loc], 7), None)
    np.testing.assert_array_equal(x.a[loc], 0)
    np.testing.assert_array_equal(x.b[loc], 7)
