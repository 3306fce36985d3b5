"""Names engines import from FlashInfer for kernels fijit does not have
(TensorRT-LLM's, FP4): importing them works, calling them raises."""


def unavailable(name, why):
    def call(*args, **kwargs):
        raise NotImplementedError(f"fijit does not implement flashinfer's "
                                  f"{name}: {why}")
    call.__name__ = name.rsplit(".", 1)[-1]
    call.__qualname__ = call.__name__
    return call
