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
