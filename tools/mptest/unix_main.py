"""The MicroPython side of the ESP32-model run of `make test-micropython` (tools/mptest/run_unix.py).

Runs inside MicroPython's unix port built with the ESP32's numbers (single-precision floats,
31-bit small ints). First proves that model is in force (a receiver test that passes only with
double floats or 64-bit ints would prove nothing about the board), then imports each test module
named on the command line and runs each ``test_*`` function (``async def`` ones under
``asyncio.run`` with a time limit). Prints one PASS/FAIL line per test and exactly
"N passed, N failed" last; exits 1 unless every test passed.
"""

import asyncio
import sys

import harness

TEST_TIMEOUT_S = 60


def number_model():
    """``None`` when floats and ints behave as on the ESP32, else what differs."""
    epoch_ms = 1.8e12
    if epoch_ms + 1 != epoch_ms:
        return "floats are double precision (1.8e12 + 1 != 1.8e12); the ESP32 has float32"
    if sys.maxsize != 2 ** 31 - 1:
        return "sys.maxsize is %d, not 2**31 - 1 as on the ESP32" % sys.maxsize
    return None


def indent(text):
    return "\n".join("    " + line for line in text.rstrip().split("\n"))


def run_module(module_name, label, show_mem):
    passed = failed = 0
    try:
        names = harness.collect(module_name)
    except BaseException as e:  # noqa: B036 - an import failure is a result here
        run = harness.Run(module_name, "(import)")
        run.fail(e)
        print("FAIL %s (import)\n%s" % (label, indent(run.error)))
        return 0, 1
    for name in names:
        run = harness.Run(module_name, name)
        coro = run.start()
        if coro is not None:
            try:
                asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT_S))
            except BaseException as e:  # noqa: B036
                run.fail(e)
        run.finish()
        mem = " [%d B left allocated]" % run.mem_delta if show_mem else ""
        if run.ok:
            passed += 1
            print("PASS %s::%s%s" % (label, name, mem))
        else:
            failed += 1
            last = run.error.rstrip().split("\n")[-1]
            print("FAIL %s::%s: %s%s\n%s" % (label, name, last, mem, indent(run.error)))
    return passed, failed


def main(argv):
    show_mem = "--mem" in argv
    modules = [a for a in argv if not a.startswith("--")]
    wrong = number_model()
    if wrong:
        print("FAIL number model: %s" % wrong)
        print("0 passed, 1 failed")
        return 1
    print("number model: float32 (1.8e12 + 1 == 1.8e12), sys.maxsize == 2**31 - 1, as on the ESP32")
    passed = failed = 0
    for spec in modules:
        module_name, label = spec.split("=", 1) if "=" in spec else (spec, spec)
        p, f = run_module(module_name, label, show_mem)
        passed += p
        failed += f
    if passed + failed == 0:
        print("no tests found")
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


sys.exit(main(sys.argv[1:]))
