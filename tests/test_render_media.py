"""Writing rendered images: the turbo-coloured depth frames."""
import numpy as np

from autoint_cli.render.media import turbo_depth


def test_turbo_depth_is_black_where_nothing_is_hit_and_shares_one_range_across_frames():
    depth = np.array([[0.0, 2.0, 4.0, 6.0]], dtype=np.float32)
    acc = np.array([[0.1, 1.0, 1.0, 1.0]], dtype=np.float32)
    first, second = turbo_depth([depth, depth[:, ::-1] * 1.0], [acc, acc[:, ::-1]])
    assert first.shape == (1, 4, 3) and first.dtype == np.uint8
    assert (first[0, 0] == 0).all() and (second[0, 3] == 0).all()  # acc 0.1: nothing hit
    near, far = first[0, 1].astype(int), first[0, 3].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # turbo: blue near, red far
    # The same depth gets the same colour in both frames: one range for the whole sequence.
    np.testing.assert_array_equal(first[0, 1], second[0, 2])
    np.testing.assert_array_equal(first[0, 3], second[0, 0])
    # depth / acc is what is coloured: 0.8 of the opacity at 0.8 of the expected depth is the same surface.
    fainter = np.array([[0.1, 0.8, 0.8, 0.8]], dtype=np.float32)
    same = turbo_depth([depth * 0.8, depth], [fainter, acc])[0]
    np.testing.assert_array_equal(same[0, 1:], first[0, 1:])
