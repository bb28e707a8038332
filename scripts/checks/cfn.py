"""Shared by the checks: a CloudFormation template of deploy/cloudformation,
read the way cfn-lint reads it (the short forms !Ref, !Sub ... as Fn:: keys)."""
import sys
from cfnlint.decode import decode_str

def load(name):
    with open(f"deploy/cloudformation/{name}.yml") as f:
        template, errors = decode_str(f.read())
    if errors:
        sys.exit(f"{name}.yml: {errors}")
    return template
