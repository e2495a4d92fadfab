"""HTTP-side pieces of the service: answer shapes, errors, batching, metrics, auth."""
