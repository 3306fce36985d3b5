"""``flashinfer.cascade`` over fijit's kernels (its merges are torch
operations for now: fijit.cascade)."""
from ..cascade import (MultiLevelCascadeAttentionWrapper, merge_state,
                       merge_state_in_place, merge_states)
