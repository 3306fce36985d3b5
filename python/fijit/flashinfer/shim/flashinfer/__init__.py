# A `flashinfer` package that is fijit's: put the folder above this one on
# PYTHONPATH (python -m fijit.flashinfer path prints it) and every process
# that imports flashinfer gets fijit.flashinfer (docs/python.md).
import fijit.flashinfer as _fijit_flashinfer

_fijit_flashinfer.install()
