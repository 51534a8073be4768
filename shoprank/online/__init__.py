"""Online learning: the feedback store, position bias, bias-corrected updates gated on quality,
going live without dropping a request, rollback, and simulated shoppers that prove the loop."""
