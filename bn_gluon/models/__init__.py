"""The article's LeNet-style CNN with batch norm, written twice: as Gluon blocks and as raw nd code.

- :mod:`.lenet`: the Gluon :class:`LeNet`, any normalization in its BN slots (``norm=`` a name, or
  ``norm_layer=`` / ``norm_kwargs=`` as in gluoncv's models);
- :mod:`.norms`: the read-only table of normalizations by name behind ``train.py --norm``;
- :mod:`.raw`: the articles' raw ``nd`` network and :class:`RawLeNet`, its adapter to the training loop;
- :mod:`.params`: parameter names, initial values, and :func:`load_arrays`, the one way a name -> array
  dict (a ``.params`` file, a raw dict, another net's values) goes into a network.
"""
from .lenet import (ACTIVATIONS, INPUT_SHAPE, LAYERS, NORM_POSITIONS, LeNet, check_input, check_norm_position,
                    lenet)
from .norms import (IMPERATIVE_NORMS, LENET_RENORM_SCHEDULE, NEEDS_POSITIONS, NORMS, RAW_NORMS, Norm, get_norm,
                    group_count, make_group_norm, make_layer_norm, make_lrn)
from .params import (RUNNING_STATS, copy_parameters, initial_value, is_running_stat, load_arrays,
                     named_parameters)
from .raw import RawLeNet, gluon_to_raw, init_raw_lenet, raw_lenet_forward, raw_to_gluon


def build_net(norm='scratch', style='gluon', dense_norm=False, article_init=False, ctx=None, impl='reference',
              norm_position='before_act'):
    """A ready network of either style: a Gluon :class:`LeNet` or a :class:`RawLeNet` around a raw dict.

    ``impl`` ('reference' or 'fast') is how the scratch batch norm computes (norm 'scratch' only);
    ``norm_position`` ('before_act' or 'after_act') where the norm sits (Gluon style only).
    """
    if impl != 'reference' and norm != 'scratch':
        raise ValueError(f"impl={impl!r} is an option of the scratch batch norm; norm {norm!r} has none.")
    check_norm_position(norm_position)
    if style == 'gluon':
        return lenet(norm, dense_norm, article_init, ctx, norm_kwargs={'impl': impl} if norm == 'scratch' else None,
                     norm_position=norm_position)
    if style == 'raw':
        if norm_position != 'before_act':
            raise ValueError(f"norm_position={norm_position!r} is an option of the Gluon LeNet; the raw network "
                             f"writes the article's conv -> BN -> ReLU only.")
        return RawLeNet(init_raw_lenet(norm, dense_norm, article_init, ctx), ctx, impl=impl)
    raise ValueError(f"style must be 'gluon' or 'raw'; got {style!r}.")


__all__ = ['LeNet', 'lenet', 'RawLeNet', 'init_raw_lenet', 'raw_lenet_forward', 'raw_to_gluon', 'gluon_to_raw',
           'build_net', 'NORM_POSITIONS', 'check_norm_position', 'NORMS', 'Norm', 'get_norm', 'group_count',
           'make_group_norm', 'make_layer_norm', 'make_lrn', 'LENET_RENORM_SCHEDULE', 'IMPERATIVE_NORMS',
           'RAW_NORMS', 'NEEDS_POSITIONS', 'ACTIVATIONS',
           'LAYERS', 'INPUT_SHAPE', 'RUNNING_STATS', 'check_input', 'named_parameters', 'initial_value',
           'is_running_stat', 'load_arrays', 'copy_parameters']
