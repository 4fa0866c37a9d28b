"""The browser side of layer-tracer: the shareable HTML report and the inspector served to a
browser. Torch-free."""
