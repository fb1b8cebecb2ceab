"""Shape inference for vectors inside a symbolic graph."""


def tie_shape(F, vectors, like):
    """Symbols only: give each vector the shape of ``like`` by adding zeros of that shape.

    Broadcasts and reshapes infer no shapes backwards, so without this a hybridized parent block could
    not infer the shape of a deferred gamma / beta from the input when it builds its graph. Each vector
    is tied to the one before it, so a vector the math then leaves unused (gamma with ``scale=False``)
    still stands in the graph, where Gluon looks for every Parameter's shape.
    """
    tied = []
    for v in vectors:
        if v is not None:
            like = F.elemwise_add(v, F.zeros_like(like))
        tied.append(None if v is None else like)
    return tied
