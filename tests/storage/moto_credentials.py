"""Sets up a moto server started with INITIAL_NO_AUTH_ACTION_COUNT=4 for the object-storage
tests (tests/integration/storage.rs): a user allowed everything, its access key, and a
bucket; prints `<access key id> <secret access key>`. Its four requests are the four moto
accepts unsigned; from then on every request needs that key.

Usage: python3 moto_credentials.py <endpoint> <bucket>
"""

import json
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
anonymous = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
)
iam = boto3.client("iam", **anonymous)
iam.create_user(UserName="hub")
iam.put_user_policy(
    UserName="hub",
    PolicyName="everything",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="hub")["AccessKey"]
boto3.client("s3", **anonymous).create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
