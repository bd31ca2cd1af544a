"""Media: pictures and videos attached to tweets. The tweets service owns them (tables
tweets.media and tweets.media_outbox), so all of media lives here, layer by layer:

- service.py: the rules (upload grants, the checks an upload passes before a tweet shows it);
  no gRPC, psycopg or store SDK.
- probe.py: what an uploaded file is, from its first bytes (pure functions).
- storage.py: every SQL statement on the media tables. It is the one place of media's SQL rather
  than a part of tweets_svc/storage.py because the grants and the janitor use it without any
  tweet; the statements that must commit with a tweet (bind, release, load) are functions the
  tweet storage calls inside its own transaction.
- stores/: the object stores behind one interface (S3 through boto3, or local files); they turn
  their vendor's errors into ours.
- janitor.py: the task that expires unused uploads and deletes the objects of deleted media.
- local_server.py: the local store's HTTP server behind Envoy's /media/ (media_store "local"),
  started with the edge.

Outside the tweets service, only the stack's edge imports it, to start local_server.
"""
