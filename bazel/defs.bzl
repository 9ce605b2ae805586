"""Macros shared by alloy's BUILD files."""

load("@rules_cc//cc:defs.bzl", "cc_test")

def alloy_test(name, srcs, deps = [], **kwargs):
    """A Boost.Test suite. Each source file defines BOOST_TEST_MODULE once.

    tools/test counts the Boost.Test cases these print ("N test cases out of M
    passed"), so every suite must be a Boost.Test program.
    """
    cc_test(
        name = name,
        srcs = srcs,
        deps = deps + ["//bazel/deps:boost_test"],
        **kwargs
    )

def alloy_return_address_test(deps):
    """return_address_test.cc of this package, twice: as built and at -O2.

    Return addresses must name the user's call in both, so the suite runs as
    `return_address_test` and `return_address_opt_test`. -rdynamic lets dladdr
    name the test's own functions.
    """
    for name, copts in [("return_address_test", []), ("return_address_opt_test", ["-O2"])]:
        alloy_test(
            name = name,
            srcs = ["return_address_test.cc"],
            copts = copts,
            linkopts = ["-rdynamic"],
            deps = deps,
        )
