#!/bin/sh
# Offline stand-in for Bazel's coverage tools: coverage needs the real @remote_coverage_tools.
echo "bazel coverage is not available offline (third_party/bazel/remote_coverage_tools is a stand-in); use pytest --cov instead." >&2
exit 1
