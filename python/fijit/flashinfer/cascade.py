"""``flashinfer.cascade`` over fijit's kernels (the merges run fijit's
merge_states kernel: fijit.cascade)."""
from ..cascade import (MultiLevelCascadeAttentionWrapper, merge_state,
                       merge_state_in_place, merge_states)
