def block_forward(block, x):
    """A pre-LN transformer block: each sublayer reads a normalised copy of x and adds to x."""
    attn_out, _ = block.attn(block.ln_1(x))  # attn returns (output, weights)
    x = x + attn_out  # residual: keep x, add what attention found
    x = x + block.mlp(block.ln_2(x))  # the MLP reads the updated x and adds to it too
    return x
