import pytest

from analytics.hll import SPARSE_LIMIT, HyperLogLog


def test_small_sets__counted_exactly_and_duplicates_ignored():
    sketch = HyperLogLog.of([f"user-{i % 300}" for i in range(5000)])
    assert sketch.count() == 300
    assert HyperLogLog.from_bytes(sketch.to_bytes()).count() == 300


@pytest.mark.parametrize("n", [SPARSE_LIMIT + 1, 5_000, 50_000, 250_000])
def test_large_sets__estimate_within_two_percent(n):
    sketch = HyperLogLog.of(f"u{i}" for i in range(n))
    assert abs(sketch.count() - n) / n < 0.02
    assert HyperLogLog.from_bytes(sketch.to_bytes()).count() == sketch.count()


def test_merge__is_the_union_whatever_the_order():
    # Given three overlapping sets of users seen by different processes
    a = HyperLogLog.of(f"u{i}" for i in range(0, 40_000))
    b = HyperLogLog.of(f"u{i}" for i in range(30_000, 70_000))
    c = HyperLogLog.of(f"u{i}" for i in range(69_000, 69_100))  # small, still sparse
    # When merged in two different orders
    left = HyperLogLog().merge(a).merge(b).merge(c)
    right = HyperLogLog().merge(c).merge(HyperLogLog.from_bytes(b.to_bytes())).merge(a)
    # Then both estimate the union (70,000 users) within 2%, identically
    assert left.count() == right.count()
    assert abs(left.count() - 70_000) / 70_000 < 0.02


def test_from_bytes__rejects_garbage():
    with pytest.raises(ValueError):
        HyperLogLog.from_bytes(b"Xjunk")
