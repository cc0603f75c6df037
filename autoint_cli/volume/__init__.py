"""Volume rendering along rays, below every model: cameras and rays (NDC too), section posts and samples, and the
compositing of the training, integral and quadrature renderers as functions of field callables."""
