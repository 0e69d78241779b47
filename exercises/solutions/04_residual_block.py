def block_forward(block, x):
    """Pre-LN: each sublayer reads a normalised copy of x and adds to x."""
    attn_out, _ = block.attn(block.ln_1(x))  # attn returns (output, weights)
    x = x + attn_out  # residual: keep x, add what attention found
    # The MLP reads the updated x and adds to it too.
    x = x + block.mlp(block.ln_2(x))
    return x
