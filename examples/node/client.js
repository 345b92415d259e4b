#!/usr/bin/env node
// A small edgegrad client in Node.js, written from the .proto files alone (`edgegrad protos DIR`).
//
//   node client.js --server HOST:PORT --protos DIR --network NET.json --inputs X.json \
//                  [--targets T.json --loss mse|bce|softmax_ce] [--reduction mean|sum] [--per-example]
//
// Sends one Compute call (submit and watch in one stream), assembles the result chunks and prints
// one JSON object: {job, outputs, loss, edge_grads, deltas, shapes}. Exit status: 0 done, 1 the job
// failed or the call broke, 2 bad input (INVALID_ARGUMENT, with the server's message).
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const DTYPES = {
  DTYPE_FLOAT64: [Float64Array, 8, "setFloat64", "getFloat64"],
  DTYPE_FLOAT32: [Float32Array, 4, "setFloat32", "getFloat32"],
  DTYPE_INT64: [BigInt64Array, 8, "setBigInt64", "getBigInt64"],
  DTYPE_UINT8: [Uint8Array, 1, "setUint8", "getUint8"],
};
const FIELDS = {RESULT_FIELD_OUTPUTS: "outputs", RESULT_FIELD_EDGE_GRADS: "edge_grads", RESULT_FIELD_DELTAS: "deltas"};

function parseArgs(argv) {
  const args = {reduction: "", loss: "", perExample: false};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--per-example") { args.perExample = true; continue; }
    const value = argv[++i];
    if (value === undefined) fail(2, `${flag}: missing value`);
    const key = {"--server": "server", "--protos": "protos", "--network": "network", "--inputs": "inputs",
                 "--targets": "targets", "--loss": "loss", "--reduction": "reduction"}[flag];
    if (!key) fail(2, `unknown option ${flag}`);
    args[key] = value;
  }
  for (const key of ["server", "protos", "network", "inputs"]) {
    if (!args[key]) fail(2, `--${key}: required`);
  }
  return args;
}

function fail(status, message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(status);
}

// A Tensor message: little-endian C-order bytes, whatever this machine's byte order.
function tensor(dtype, values, shape) {
  const [, size, setter] = DTYPES[dtype];
  const view = new DataView(new ArrayBuffer(values.length * size));
  values.forEach((v, i) => dtype === "DTYPE_UINT8" ? view.setUint8(i, v)
    : view[setter](i * size, dtype === "DTYPE_INT64" ? BigInt(v) : v, true));
  return {dtype, shape, data: Buffer.from(view.buffer)};
}

function matrix(rows, name) {
  if (!Array.isArray(rows) || !rows.every(Array.isArray)) fail(2, `${name}: expected a JSON list of rows`);
  return tensor("DTYPE_FLOAT64", rows.flat(), [rows.length, rows.length ? rows[0].length : 0]);
}

// The edgegrad.network/v1 JSON file in the wire's columnar form.
function networkMessage(net) {
  const ids = [...net.inputs, ...net.nodes.map((n) => n.id)];
  const index = new Map(ids.map((id, i) => [id, i]));
  const table = [...new Set(net.nodes.map((n) => n.activation || "identity"))];
  const edges = net.edges || [];
  const vertex = (id, place) => index.has(id) ? index.get(id) : fail(2, `${place}: unknown node '${id}'`);
  return {
    inputs: net.inputs, outputs: net.outputs, node_ids: net.nodes.map((n) => n.id), activation_table: table,
    activation_index: tensor("DTYPE_UINT8", net.nodes.map((n) => table.indexOf(n.activation || "identity")), [net.nodes.length]),
    biases: tensor("DTYPE_FLOAT64", net.nodes.map((n) => n.bias || 0), [net.nodes.length]),
    src: tensor("DTYPE_INT64", edges.map((e, i) => vertex(e.src, `edges[${i}].src`)), [edges.length]),
    dst: tensor("DTYPE_INT64", edges.map((e, i) => vertex(e.dst, `edges[${i}].dst`)), [edges.length]),
    weights: tensor("DTYPE_FLOAT64", edges.map((e) => e.weight), [edges.length]),
  };
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    return fail(2, `${file}: ${err.message}`);
  }
}

// Nested arrays of a flat array in C order.
function nest(flat, shape) {
  if (shape.length <= 1) return Array.from(flat);
  const step = flat.length / shape[0];
  return Array.from({length: shape[0]}, (_, i) => nest(flat.subarray(i * step, (i + 1) * step), shape.slice(1)));
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const definition = protoLoader.loadSync("edgegrad/v1/service.proto", {
    includeDirs: [path.resolve(args.protos)], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  const edgegrad = grpc.loadPackageDefinition(definition).edgegrad.v1;
  const client = new edgegrad.Edgegrad(args.server, grpc.credentials.createInsecure());
  const request = {
    network_inline: networkMessage(readJson(args.network)), inputs: matrix(readJson(args.inputs), "inputs"),
    loss: args.loss, reduction: args.reduction, per_example: args.perExample,
  };
  if (args.targets) request.targets = matrix(readJson(args.targets), "targets");

  const fields = {};   // name -> {shape, values}
  let layout = null;
  let done = null;
  let name = "";
  const call = client.Compute({request}, {deadline: Date.now() + 120000});
  call.on("data", (event) => {
    if (event.event === "state" || event.event === "done") {
      const job = event[event.event];
      name = job.name || name;
      if (!layout && job.layout && job.layout.fields.length) {
        layout = job.layout;
        const [Kind] = DTYPES[layout.dtype];
        for (const f of layout.fields) {
          fields[FIELDS[f.field]] = {shape: f.shape, values: new Kind(f.shape.reduce((a, b) => a * b, 1))};
        }
      }
      if (event.event === "done") done = job;
    } else if (event.event === "chunk") {
      const chunk = event.chunk;
      const [, size, , getter] = DTYPES[chunk.data.dtype];
      const view = new DataView(chunk.data.data.buffer, chunk.data.data.byteOffset, chunk.data.data.byteLength);
      const target = fields[FIELDS[chunk.field]].values;
      for (let i = 0; i < chunk.stop - chunk.start; i++) target[chunk.start + i] = view[getter](i * size, true);
      if (layout.buffer_bytes > 0) {   // let the workers write more
        client.AckJob({name, seq: chunk.seq}, () => {});
      }
    }
  });
  call.on("error", (err) => fail(err.code === grpc.status.INVALID_ARGUMENT ? 2 : 1,
    err.code === grpc.status.INVALID_ARGUMENT ? err.details : `${grpc.status[err.code]}: ${err.details}`));
  call.on("end", () => {
    if (!done) fail(1, "the stream ended without the job's final state");
    if (done.state !== "JOB_STATE_SUCCEEDED") {
      fail(1, `${done.name}: ${done.state}: ${done.error ? done.error.message : ""}`);
    }
    const out = {job: done.name, loss: layout && layout.loss_mode ? done.loss : null, shapes: {}};
    for (const [name, f] of Object.entries(fields)) {
      out[name] = nest(f.values, f.shape);
      out.shapes[name] = f.shape;
    }
    process.stdout.write(JSON.stringify(out) + "\n");
    client.close();
  });
}

main();
