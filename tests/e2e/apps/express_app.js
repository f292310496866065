// Express app for the e2e suite: every path answers with what Express saw (`req.headers` with
// every key as Node lower-cased it — `x-user.sub` stays `x-user.sub` — `req.rawHeaders`, the
// Cookie header; Node has no CGI variables, so `env` is empty). `/admin` is mounted with `app.use`, which Express matches
// case-insensitively (its default), so `/ADMIN/x` reaches the admin handler — the reason
// Portcullis needs `match.case_insensitive: true` in front of it. Each request is appended to
// $E2E_HITS before answering.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const express = require('express');

const app = express();
const hits = process.env.E2E_HITS;

function handler(name) {
  return (req, res) => {
    const digest = crypto.createHash('sha256');
    let length = 0;
    req.on('data', (chunk) => {
      digest.update(chunk);
      length += chunk.length;
    });
    req.on('end', () => {
      const path = req.originalUrl.split('?')[0];
      const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
      fs.appendFileSync(hits, JSON.stringify({ method: req.method, path, query }) + '\n');
      const cookies = {};
      for (const pair of (req.headers.cookie || '').split(';')) {
        const i = pair.indexOf('=');
        if (i > 0) cookies[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
      }
      const headers = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
      res.json({
        framework: 'express',
        handler: name,
        method: req.method,
        path,
        raw_path: req.originalUrl,
        sub: req.get('X-User-Sub') ?? null,
        groups: req.get('X-User-Groups') ?? null,
        headers,
        server: req.headers,
        env: {},
        cookie_header: req.headers.cookie ?? null,
        cookies,
        body_len: length,
        body_sha256: digest.digest('hex'),
      });
    });
  };
}

app.use('/admin', handler('admin'));
app.use(handler('echo'));

const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`express listening on ${server.address().port}`);
});
