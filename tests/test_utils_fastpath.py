"""Precision contexts: what they set while open and what they leave behind."""
import threading

import torch

from autoint_cli.utils.fastpath import matmul_precision


def flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_nested_precisions_restore_the_outer_one_and_then_the_flags_from_before():
    saved = flags()
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
        with matmul_precision("bf16"):
            assert flags() == (True, True)
            with matmul_precision("fp32"):
                assert flags() == (False, False)
            assert flags() == (True, True)
        assert flags() == (False, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_bodies_that_overlap_on_two_threads_leave_the_flags_as_they_were():
    """Thread A opens bf16, thread B opens bf16, A ends while B still runs, then B ends. Saving and restoring per body left
    TF32 off under B's running body and on for good after it; now B keeps TF32 and the flags end as they began."""
    saved = flags()
    events = {name: threading.Event() for name in ("a_open", "b_open", "a_closed")}
    seen = {}

    def a():
        with matmul_precision("bf16"):
            events["a_open"].set()
            events["b_open"].wait(10)
        events["a_closed"].set()

    def b():
        events["a_open"].wait(10)
        with matmul_precision("bf16"):
            events["b_open"].set()
            events["a_closed"].wait(10)
            seen["under_b"] = flags()

    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert seen["under_b"] == (True, True) and flags() == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
