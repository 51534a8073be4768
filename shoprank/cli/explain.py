""""Why this order?": `shoprank explain` (words shaded by attribution, HTML page) and
`shoprank explain-report` (both methods, faithfulness, cost on real pairs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import config


def explain(argv: list[str]) -> int:
    """Explain a query's ranking over the running server's `explain` model: each product's words
    (and the query's) shaded by how much they moved its score, best first; --html writes the page.

      shoprank explain --query "cordless drill" "DEWALT 20V MAX drill kit" "white interior paint"
      shoprank explain --example --html reports/explain.html
    """
    from ..errors import RankError
    from ..explain.client import ExplainClient
    from ..serving.client import PROTOCOLS, default_url

    parser = argparse.ArgumentParser(prog="shoprank explain", description=explain.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("products", nargs="*", help=f"product texts, at most {config.EXPLAIN_MAX_CANDIDATES}")
    parser.add_argument("--query")
    parser.add_argument("--candidates-file", type=Path, help="one product text per line")
    parser.add_argument("--example", action="store_true", help="the demo's example query and products")
    parser.add_argument("--html", type=Path, help="write the page here")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    parser.add_argument("--url", help="host:port (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    parser.add_argument("--colour", choices=("auto", "always", "never"), default="auto",
                        help="ANSI shading (auto: when printing to a terminal)")
    args = parser.parse_args(argv)
    query, products = args.query, list(args.products)
    if args.example:
        from .serve import EXAMPLE

        query, products = query or EXAMPLE[0], products or list(EXAMPLE[1])
    if args.candidates_file:
        try:
            products += [line.strip() for line in args.candidates_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            parser.exit(2, f"shoprank explain: cannot read --candidates-file {args.candidates_file}: {exc.strerror}\n")
    if not query:
        parser.exit(2, "shoprank explain: give --query QUERY (or --example)\n")
    if not products:
        parser.exit(2, "shoprank explain: give 1..10 product texts after the options (or --candidates-file)\n")
    if len(products) > config.EXPLAIN_MAX_CANDIDATES:
        parser.exit(2, f"shoprank explain: {len(products)} products; explain at most "
                       f"{config.EXPLAIN_MAX_CANDIDATES} at a time\n")
    url = args.url or default_url(args.protocol)
    try:
        with ExplainClient(url, args.protocol) as client:
            explained = client.explain(query, products)
    except RankError as exc:
        print(f"shoprank explain: error from server at {url}: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    from ..explain import html, terminal

    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
    print(terminal.render(query, explained, colour=colour))
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html.render(query, explained))
        print(f"page: {args.html}")
    return 0


def explain_report(argv: list[str]) -> int:
    """Occlusion (served) and Integrated Gradients (PyTorch) on real pairs: agreement, deletion
    curves against random, and the cost of explaining -> reports/explanations.md + .json."""
    from ..explain.report import build_report, cost_report, default_model, write_report

    model, engine = default_model()
    parser = argparse.ArgumentParser(prog="shoprank explain-report", description=explain_report.__doc__)
    parser.add_argument("--model", type=Path, default=model, help="fine-tuned model folder (default: %(default)s)")
    parser.add_argument("--engine", type=Path, default=engine, help="its ONNX engine (default: %(default)s)")
    parser.add_argument("--data", default=None, help="judgments: the model card's when not given (shared = Home Depot)")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--cost-requests", type=int, default=20)
    parser.add_argument("--out", type=Path, default=config.REPORTS_DIR)
    parser.add_argument("--cost-only", action="store_true",
                        help="only the cost (explain rank-10, rank-50 with/without explain) -> explanations_cost.json")
    args = parser.parse_args(argv)
    for path, what in ((args.model / "config.json", "model folder"), (args.engine, "engine")):
        if not path.exists():
            parser.exit(2, f"shoprank explain-report: no {what} at {path}: "
                           "build it first (make finetune / make int8)\n")
    if args.cost_only:
        import json

        out = cost_report(args.model, args.engine, args.data, args.cost_requests)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "explanations_cost.json").write_text(json.dumps(out, indent=2, default=float))
        print(json.dumps(out, indent=2, default=float))
        return 0
    report = build_report(args.model, args.engine, args.data, args.pairs, cost_requests=args.cost_requests)
    md, js = write_report(report, args.out)
    print(md.read_text())
    print(f"written: {md}, {js}")
    return 0
