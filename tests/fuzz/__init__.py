"""Coverage-guided fuzzers (atheris/libFuzzer) of the pure codecs; see tests/fuzz/README.md."""
