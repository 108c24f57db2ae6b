"""The one installed command, `loaxa`, dispatching lazily to each part's own `main(argv)`.

Subcommand modules are imported only when used, so `loaxa broker` starts without loading the
head-end, and a part that is not installed gives a message instead of a traceback.
"""

import importlib
import sys

# name -> (module, one-line description)
SUBCOMMANDS = {
    "headend": ("headend.cli", "the commune head-end (web UI, scheduler, device manager)"),
    "broker": ("tools.broker", "the embedded MQTT broker (amqtt), for one commune on one PC"),
    "sim": ("simulator.cli", "simulated receivers against a broker"),
    "demo": ("simulator.demo", "broker + head-end + simulated receivers, all on this PC"),
    "audio": ("audio.cli", "convert and inspect audio renditions (mp3, IMA-ADPCM)"),
    "device": ("tools.device", "provision and flash a real ESP32 receiver"),
}


def usage():
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: loaxa <command> [options]", "", "Loaxa: open IP radio for Vietnamese communes.",
             "", "commands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append("  %s  %s" % (name.ljust(width), text))
    lines += ["", "`loaxa <command> --help` describes each command's options."]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print("loaxa: unknown command %r\n\n%s" % (name, usage()), file=sys.stderr)
        return 2
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            print("loaxa %s: not available in this installation (module %s is missing)"
                  % (name, module_name), file=sys.stderr)
            return 2
        raise
    entry = getattr(module, "main", None)
    if entry is None:
        print("loaxa %s: %s has no main(argv)" % (name, module_name), file=sys.stderr)
        return 2
    code = entry(rest)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
