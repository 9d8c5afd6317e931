#!/usr/bin/env python3
"""Train the TensorFlow reconstruction of an fc IR and write the trained weights back into
the IR (the seed's ``test_tensorflow_recostructor_train.py``):

    python examples/test_tensorflow_recostructor_train.py --graph G --params P \
        --input_npy X.npy (--label_npy LABELS.npy | --result_npy TARGET.npy) \
        [--steps 20] [--lr 0.01] [--batch 8] [--save_prefix trained/IR_for_reconstruct] \
        [--save_path trained.pb]

Integer labels train with cross-entropy on the model's outputs as logits; a target array
with mean squared error. Prints the loss of every step; writes the trained IR
(``<prefix>_graph.json`` + ``_params.npz``) and, with --save_path, its frozen .pb.
"""

import argparse
import sys

from fc.errors import FcError

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", required=True)
    p.add_argument("--params")
    p.add_argument("--input_npy", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--label_npy", help="integer class labels (cross-entropy)")
    target.add_argument("--result_npy", help="target outputs (mean squared error)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch", type=int)
    p.add_argument("--save_prefix", default="trained/IR_for_reconstruct")
    p.add_argument("--save_path", help="also write the trained model as a frozen .pb")
    args = p.parse_args()
    try:
        import fc.ir
        from fc.commands._io import load_npy
        from fc.reconstruct.tf import TFModel, fit

        graph = fc.ir.load(args.graph, args.params)
        model = TFModel(graph)
        x = load_npy(args.input_npy, "input")
        labels = args.label_npy is not None
        t = load_npy(args.label_npy or args.result_npy, "labels" if labels else "target")
        losses = fit(model, [x], t, steps=args.steps, lr=args.lr, batch=args.batch,
                     loss="crossentropy" if labels else "mse",
                     progress=lambda i, v: print(f"step {i + 1}/{args.steps}: loss {v:.6g}"))
        gpath, ppath = fc.ir.save(model.write_back(), args.save_prefix)
        print(f"loss {losses[0]:.6g} -> {losses[-1]:.6g}; wrote {gpath} and {ppath}")
        if args.save_path:
            model.freeze().save(args.save_path)
            print(f"wrote {args.save_path}")
    except FcError as e:
        print(f"test_tensorflow_recostructor_train: error: {e}", file=sys.stderr)
        sys.exit(2)
