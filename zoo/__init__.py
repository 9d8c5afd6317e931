"""fc's own model definitions, one subpackage per framework (seeded weights, no downloads).

These are *test and demo models*, kept apart from the importers: ``fc.zoo.mxnet`` (GluonCV
architectures as MXNet symbols), ``fc.zoo.torch`` (torchvision-style ``nn.Module``s, because
torchvision does not import beside fc's torch pin).
"""
