"""The operator catalogue of spec language v1, by family: the list every op registry is held to."""

CATALOGUE: dict[str, tuple[str, ...]] = {
    "tensor": ("identity", "add", "sub", "mul", "div", "matmul", "concat", "split", "reshape", "flatten", "permute",
               "transpose", "squeeze", "unsqueeze", "slice", "select", "sum", "mean", "max", "expand", "detach",
               "one_hot", "param", "constant"),
    "dense": ("linear",),
    "activation": ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "sign", "step", "silu", "softplus", "gelu",
                   "elu", "softmax", "log_softmax"),
    "convolution": ("conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                    "global_avg_pool2d", "upsample"),
    "normalisation": ("batch_norm", "layer_norm", "dropout", "standardize"),
    "sequence": ("embedding", "rnn", "lstm", "gru"),
    "attention": ("scaled_dot_product_attention", "multi_head_attention", "positional_encoding"),
    "graph": ("gcn_conv", "gat_conv", "graph_aggregate"),
    "generative": ("reparameterize", "kl_normal"),
    "similarity": ("cosine_similarity", "pairwise_distance"),
    "loss": ("mse_loss", "l1_loss", "cross_entropy", "nll_loss", "bce_loss", "bce_with_logits"),
}

ALL_OPS: tuple[str, ...] = tuple(op for ops in CATALOGUE.values() for op in ops)


def import_families(package: str, exclude: tuple[str, ...] = ()) -> None:
    """Import `<package>.<family>` for every family, registering its ops, kernels or lowerings."""
    from importlib import import_module
    for family in CATALOGUE:
        if family not in exclude:
            import_module(f"{package}.{family}")
