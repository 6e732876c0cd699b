#!/usr/bin/env bash
# Creates and configures the registry bucket on AWS S3 (any S3-compatible store with conditional
# writes works; adapt the calls for R2 or MinIO). Idempotent. Needs the AWS CLI and credentials
# allowed to administer the bucket.
#
#   infra/s3/setup-bucket.sh BUCKET [PREFIX] [REGION]     (registry at s3://BUCKET/PREFIX)
#
# What it sets: private (public access blocked, bucket-owner-enforced ownership), encrypted at
# rest (SSE-S3), no versioning (the registry is content-addressed and immutable by protocol;
# versioning would only keep every rewrite of index.json and job objects), and a lifecycle that
# removes the probe's scratch objects and aborts stale multipart uploads. Then it prints the
# two IAM policies to attach: workers (read-write) and functions (read, plus job requests).
set -euo pipefail
bucket=${1:?usage: setup-bucket.sh BUCKET [PREFIX] [REGION]}
prefix=${2:-}
prefix=${prefix%/}${prefix:+/}
region=${3:-${AWS_REGION:-eu-west-1}}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if aws s3api head-bucket --bucket "$bucket" 2>/dev/null; then
    echo "bucket $bucket exists"
elif [ "$region" = us-east-1 ]; then
    aws s3api create-bucket --bucket "$bucket" --region "$region"
else
    aws s3api create-bucket --bucket "$bucket" --region "$region" \
        --create-bucket-configuration "LocationConstraint=$region"
fi
aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-ownership-controls --bucket "$bucket" \
    --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]'
aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" \
    --lifecycle-configuration "$(sed "s|@PREFIX@|$prefix|g" "$here/lifecycle.json")"

for role in worker functions; do
    echo "--- IAM policy for the $role (infra/s3/policy-$role.json, bucket filled in):"
    sed -e "s|@BUCKET@|$bucket|g" -e "s|@PREFIX@|$prefix|g" "$here/policy-$role.json"
done
