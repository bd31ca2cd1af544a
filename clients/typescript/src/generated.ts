/** The generated messages and services (protoc-gen-es, from protos/), one namespace per package. */

export * as graphV1 from "./gen/chirp/graph/v1/graph_pb.js";
export * as timelineV1 from "./gen/chirp/timeline/v1/timeline_pb.js";
export * as tweetsV1 from "./gen/chirp/tweets/v1/tweets_pb.js";
export * as usersV1 from "./gen/chirp/users/v1/users_pb.js";
