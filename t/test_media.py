"""Attachments' uploads: the upload request answers a signed, expiring PUT
URL on the same nginx; the PUT stores the file, a GET with a GET
signature reads it back; bad or expired signatures are 403, other sizes
than announced refused; over the limit, refused types and non-members
answered as the contract says."""

import hashlib
import hmac
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from chatlib import dm_id, expect_error, indexed, unique, wait_indexed

T = 15.0
MAX_BYTES = 1024 * 1024          # chat_media_max_bytes in conf/nginx.conf.in


def media_secret(stack):
    return (stack.secret + ".media").encode()


def sign(stack, method, aid, size, expires):
    text = "%s\n%s\n%d\n%d" % (method, aid, size, expires)
    return hmac.new(media_secret(stack), text.encode(),
                    hashlib.sha256).hexdigest()


def media_url(stack, method, aid, size, expires, sig=None):
    return ("%s/media/%s?n=%d&e=%d&s=%s"
            % (stack.http_url.rsplit("/", 1)[0], aid, size, expires,
               sig or sign(stack, method, aid, size, expires)))


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=T) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload(c, conv, size, ctype="image/png", name="cat.png", req_id="up"):
    c.send_json({"type": "upload", "req_id": req_id, "conversation_id": conv,
                 "content_type": ctype, "size": size, "name": name})
    return c.recv_until(lambda o: o.get("req_id") == req_id
                        and o.get("type") in ("upload", "error"), T,
                        what="answer to upload %r" % req_id)


def test_upload_put_get(stack):
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    data = bytes(range(256)) * 40
    c = stack.connect(a, "phone")
    try:
        assert "upload" in c.hello["features"], c.hello
        t0 = int(time.time() * 1000)
        up = upload(c, conv, len(data), req_id={"k": "up1"})
        assert up["type"] == "upload", up
        assert up["req_id"] == {"k": "up1"}
        aid = up["attachment_id"]
        assert len(aid) == 32 and all(ch in "0123456789abcdef" for ch in aid)
        assert up["max_bytes"] == MAX_BYTES
        assert t0 < up["expires_at"] <= t0 + 5 * 60 * 1000 + 5000, up
        assert up["url"].startswith(stack.http_url.rsplit("/", 1)[0]
                                    + "/media/" + aid + "?"), up
        row = stack.psql("select conversation_id, uploader_id, device_id,"
                         " content_type, size, name from attachments where"
                         " attachment_id = '%s'" % aid)
        assert row == "%s|%s|phone|image/png|%d|cat.png" % (conv, a,
                                                            len(data)), row

        # the PUT URL reads nothing, and other sizes are refused
        assert http("GET", up["url"])[0] == 403
        assert http("PUT", up["url"], data + b"x")[0] == 413
        assert http("PUT", up["url"], data[:-1])[0] == 400
        st, _ = http("PUT", up["url"], data,
                     {"Content-Type": "image/png"})
        assert st in (201, 204), st

        q = urllib.parse.parse_qs(urllib.parse.urlparse(up["url"]).query)
        exp = int(q["e"][0])
        st, body = http("GET", media_url(stack, "GET", aid, len(data), exp))
        assert st == 200 and body == data, (st, len(body))
    finally:
        c.close()


def test_bad_and_expired_signatures(stack):
    a, b = unique("ma"), unique("mb")
    data = b"hello world"
    c = stack.connect(a, "phone")
    try:
        up = upload(c, dm_id(a, b), len(data), ctype="text/plain",
                    name="a.txt")
        assert up["type"] == "upload", up
        aid = up["attachment_id"]
        good = up["url"]
        bad = good[:-1] + ("0" if good[-1] != "0" else "1")
        assert http("PUT", bad, data)[0] == 403
        # the size is signed: another n is another URL
        assert http("PUT", good.replace("?n=%d&" % len(data), "?n=%d&"
                                        % (len(data) + 1)), data + b"!")[0] \
            == 403
        now = int(time.time() * 1000)
        expired = media_url(stack, "PUT", aid, len(data), now - 1000)
        assert http("PUT", expired, data)[0] == 403
        assert http("PUT", good, data)[0] in (201, 204)
        assert http("GET", media_url(stack, "GET", aid, 0, now - 1))[0] \
            == 403
        assert http("GET", media_url(stack, "GET", aid, 0, now + 60000,
                                     sig="0" * 64))[0] == 403
        assert http("GET", media_url(stack, "GET", aid, 0, now + 60000))[0] \
            == 200
        # a name that is no attachment id is never served
        assert http("GET", media_url(stack, "GET", "../nginx.conf", 0,
                                     now + 60000))[0] in (400, 403, 404)
        assert http("DELETE", media_url(stack, "GET", aid, 0,
                                        now + 60000))[0] in (403, 405)
    finally:
        c.close()


@pytest.mark.parametrize("frame,code", [
    ({"size": MAX_BYTES + 1}, "too_large"),
    ({"size": 0}, "bad_request"),
    ({"size": "10"}, "bad_request"),
    ({"content_type": "application/x-msdownload"}, "bad_request"),
    ({"content_type": ""}, "bad_request"),
    ({"name": ""}, "bad_request"),
    ({"name": "x" * 256}, "too_large"),
    ({"name": "a\nb"}, "bad_request"),
])
def test_upload_refused(stack, frame, code):
    a, b = unique("ma"), unique("mb")
    c = stack.connect(a, "phone")
    try:
        f = {"type": "upload", "req_id": "r", "conversation_id": dm_id(a, b),
             "content_type": "image/png", "size": 10, "name": "x.png"}
        f.update(frame)
        c.send_json(f)
        e = expect_error(c, T, req_id="r")
        assert e["code"] == code, e
    finally:
        c.close()


def test_upload_needs_membership(stack):
    a, b, x = unique("ma"), unique("mb"), unique("mx")
    ca = stack.connect(a, "phone")
    cx = stack.connect(x, "phone")
    try:
        ca.send_json({"type": "create_group", "req_id": "g", "name": "G",
                      "members": [b]})
        g = ca.recv_type("group", T, req_id="g")
        up = upload(cx, g["conversation_id"], 10)
        assert up["type"] == "error" and up["code"] == "forbidden", up
        assert "url" not in up
        up = upload(cx, dm_id(a, b), 10, req_id="dm")
        assert up["type"] == "error" and up["code"] == "forbidden", up
        up = upload(ca, g["conversation_id"], 10, req_id="ok")
        assert up["type"] == "upload", up
        assert stack.psql("select count(*) from attachments where"
                          " uploader_id = '%s'" % x) == "0"
    finally:
        ca.close()
        cx.close()


def put_file(stack, c, conv, data, ctype="image/png", name="cat.png",
             req_id="up"):
    up = upload(c, conv, len(data), ctype=ctype, name=name, req_id=req_id)
    assert up["type"] == "upload", up
    st, _ = http("PUT", up["url"], data, {"Content-Type": ctype})
    assert st in (201, 204), st
    return up["attachment_id"]


def send_att(c, cmid, conv, ids, body=""):
    c.send_json({"type": "send", "client_msg_id": cmid,
                 "conversation_id": conv, "body": body,
                 "attachments": ids})
    return c.recv_until(lambda o: o.get("client_msg_id") == cmid
                        and o.get("type") in ("ack", "error"), T,
                        what="answer to send %r" % cmid)


def check_entry(stack, e, aid, data, ctype, name):
    assert e["attachment_id"] == aid, e
    assert e["content_type"] == ctype and e["size"] == len(data), e
    assert e["name"] == name, e
    st, body = http("GET", e["url"])
    assert st == 200 and body == data, (st, len(body))
    # the GET URL is no PUT URL
    assert http("PUT", e["url"], data)[0] == 403


def test_send_with_attachments_members_download(stack):
    a, b, x = unique("ma"), unique("mb"), unique("mx")
    conv = dm_id(a, b)
    png, txt = b"\x89PNG fake bytes" * 10, b"some notes\n"
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    cx = stack.connect(x, "phone")
    try:
        p1 = put_file(stack, ca, conv, png)
        p2 = put_file(stack, ca, conv, txt, ctype="text/plain",
                      name="notes.txt", req_id="up2")
        ack = send_att(ca, "s1", conv, [p2, p1])
        assert ack["type"] == "ack", ack
        m = cb.recv_type("message", T, client_msg_id="s1")
        assert m["body"] == "" and m["kind"] == "text", m
        assert [e["attachment_id"] for e in m["attachments"]] == [p2, p1]
        check_entry(stack, m["attachments"][0], p2, txt, "text/plain",
                    "notes.txt")
        check_entry(stack, m["attachments"][1], p1, png, "image/png",
                    "cat.png")

        # history signs afresh
        time.sleep(0.01)
        cb.send_json({"type": "history", "req_id": "h",
                      "conversation_id": conv})
        h = cb.recv_type("history", T, req_id="h")
        hm = [y for y in h["messages"] if y["client_msg_id"] == "s1"][0]
        assert hm["attachments"][0]["url"] != m["attachments"][0]["url"]
        check_entry(stack, hm["attachments"][1], p1, png, "image/png",
                    "cat.png")

        # so does sync
        cb.send_json({"type": "sync", "req_id": "sy"})
        sm = cb.recv_type("message", T, client_msg_id="s1")
        check_entry(stack, sm["attachments"][0], p2, txt, "text/plain",
                    "notes.txt")

        # a non-member gets no URL: the conversation is forbidden
        cx.send_json({"type": "history", "req_id": "hx",
                      "conversation_id": conv})
        e = expect_error(cx, T, req_id="hx")
        assert e["code"] == "forbidden", e

        # a retry gets the same ack, nothing is stored twice
        again = send_att(ca, "s1", conv, [p2, p1])
        assert again["type"] == "ack", again
        assert again["message_id"] == ack["message_id"], (again, ack)
        assert stack.psql("select count(*) from attachments where"
                          " message_id = %s" % ack["message_id"]) == "2"
    finally:
        ca.close()
        cb.close()
        cx.close()


def test_attach_refused(stack):
    a, b, c_ = unique("ma"), unique("mb"), unique("mc")
    conv = dm_id(a, b)
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    try:
        # announced, never PUT
        up = upload(ca, conv, 10)
        r = send_att(ca, "n1", conv, [up["attachment_id"]])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        # an id nobody announced
        r = send_att(ca, "n2", conv, ["0" * 32])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        # not an id at all, and too many
        r = send_att(ca, "n3", conv, ["nope"])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        r = send_att(ca, "n4", conv, ["%032x" % i for i in range(11)])
        assert r["type"] == "error" and r["code"] in ("too_large",
                                                      "bad_request"), r
        # another user's upload, and one made for another conversation
        theirs = put_file(stack, cb, conv, b"abc", ctype="text/plain",
                          name="b.txt")
        r = send_att(ca, "n5", conv, [theirs])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        other = put_file(stack, ca, dm_id(a, c_), b"abc", ctype="text/plain",
                         name="c.txt", req_id="u3")
        r = send_att(ca, "n6", conv, [other])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        # attached once only
        mine = put_file(stack, ca, conv, b"abcd", ctype="text/plain",
                        name="d.txt", req_id="u4")
        assert send_att(ca, "n7", conv, [mine])["type"] == "ack"
        r = send_att(ca, "n8", conv, [mine])
        assert r["type"] == "error" and r["code"] == "bad_request", r
        # nothing of the refused ones was stored
        assert stack.psql("select count(*) from messages where sender_id ="
                          " '%s'" % a) == "1"
    finally:
        ca.close()
        cb.close()


def make_png(w, h):
    """A real w x h RGB PNG (a gradient), made with zlib alone."""
    import struct
    import zlib

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // w, y * 255 // h,
                                               128)) for x in range(w))
                    for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_size(data):
    import struct
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


def test_image_size_and_thumbnail(stack):
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    png = make_png(300, 150)
    assert png_size(png) == (300, 150)
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    try:
        pid = put_file(stack, ca, conv, png)
        # a text file is no image: no size, no thumbnail
        tid = put_file(stack, ca, conv, b"plain", ctype="text/plain",
                       name="t.txt", req_id="u2")
        # nor is a "PNG" that is not one
        fid = put_file(stack, ca, conv, b"not a png at all", req_id="u3",
                       name="fake.png")
        ack = send_att(ca, "img", conv, [pid, tid, fid], body="look")
        assert ack["type"] == "ack", ack
        m = cb.recv_type("message", T, client_msg_id="img")
        img, txt, fake = m["attachments"]
        assert (img["width"], img["height"]) == (300, 150), img
        st, thumb = http("GET", img["thumbnail_url"])
        assert st == 200, st
        tw, th = png_size(thumb)
        assert (tw, th) == (256, 128), (tw, th)
        for e in (txt, fake):
            assert "width" not in e and "thumbnail_url" not in e, e
        # the thumbnail's URL is signed like the file's
        bad = img["thumbnail_url"][:-1] + (
            "0" if img["thumbnail_url"][-1] != "0" else "1")
        assert http("GET", bad)[0] == 403
        assert stack.psql("select width || 'x' || height from attachments"
                          " where attachment_id = '%s'" % pid) == "300x150"
        # history shows the same, signed afresh
        cb.send_json({"type": "history", "req_id": "h",
                      "conversation_id": conv})
        h = cb.recv_type("history", T, req_id="h")
        e = h["messages"][-1]["attachments"][0]
        assert (e["width"], e["height"]) == (300, 150)
        assert http("GET", e["thumbnail_url"])[0] == 200
    finally:
        ca.close()
        cb.close()


def test_unattached_uploads_cleaned_up(stack):
    """The stack's workers keep an upload never attached for 8 s."""
    from chatlib import wait_for
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    ca = stack.connect(a, "phone")
    try:
        kept = put_file(stack, ca, conv, b"kept", ctype="text/plain",
                        name="k.txt", req_id="k")
        gone = put_file(stack, ca, conv, b"gone", ctype="text/plain",
                        name="g.txt", req_id="g")
        assert send_att(ca, "keep", conv, [kept])["type"] == "ack"
        path = "%s/nginx/media/%s" % (stack.dir, gone)
        import os
        assert os.path.exists(path)
        wait_for(lambda: stack.psql("select count(*) from attachments where"
                                    " attachment_id = '%s'" % gone) == "0",
                 30, interval=0.5, what="the unattached upload forgotten")
        wait_for(lambda: not os.path.exists(path), 5,
                 what="its file removed")
        assert os.path.exists("%s/nginx/media/%s" % (stack.dir, kept))
        # the message still lists what it attached, and it downloads
        ca.send_json({"type": "history", "req_id": "h",
                      "conversation_id": conv})
        h = ca.recv_type("history", T, req_id="h")
        e = h["messages"][-1]["attachments"][0]
        assert http("GET", e["url"]) == (200, b"kept")
        # too late to attach the one that went
        r = send_att(ca, "late", conv, [gone])
        assert r["type"] == "error" and r["code"] == "bad_request", r
    finally:
        ca.close()


def search(c, query, rid, **kw):
    frame = {"type": "search", "req_id": rid, "query": query}
    frame.update(kw)
    c.send_json(frame)
    return c.recv_until(lambda o: o.get("req_id") == rid
                        and o.get("type") in ("search", "error"), T,
                        what="answer to search %r" % query)


def found(c, query, rid, **kw):
    r = search(c, query, rid, **kw)
    assert r["type"] == "search", r
    return r["results"]


def test_search_finds_attachment_names(stack):
    """An attachment's name is searched as the words its punctuation
    separates (quarterly-report.pdf: quarterly, report, pdf), together with
    the message's text; the highlight marks them in the name as written;
    the results show the attachments as history does; only members find
    them; a deletion erases the names with the text."""
    a, b, x = unique("ma"), unique("mb"), unique("mx")
    conv = dm_id(a, b)
    word = "q" + uuid.uuid4().hex[:10]
    name = "%s-report_Q3.pdf" % word
    data = b"%PDF not really\n"
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    cx = stack.connect(x, "phone")
    try:
        aid = put_file(stack, ca, conv, data, ctype="application/pdf",
                       name=name)
        ack = send_att(ca, "s1", conv, [aid], body="see attached")
        assert ack["type"] == "ack", ack
        ca.send_json({"type": "send", "client_msg_id": "s2",
                      "conversation_id": conv, "body": "%s, report" % word})
        s2 = ca.recv_type("ack", T, client_msg_id="s2")
        assert s2
        wait_indexed(stack, [ack["message_id"], s2["message_id"]])

        for q, mark in ((word, "<b>%s</b>-report_Q3.pdf" % word),
                        ("report", "%s-<b>report</b>_Q3.pdf" % word),
                        ("q3", "%s-report_<b>Q3</b>.pdf" % word),
                        ("%s report pdf" % word,
                         "<b>%s</b>-<b>report</b>_Q3.<b>pdf</b>" % word)):
            res = [r for r in found(cb, q, "q-" + q, conversation_id=conv)
                   if r["message_id"] == ack["message_id"]]
            assert len(res) == 1, (q, res)
            assert res[0]["highlight"] == mark, (q, res[0])
        # the whole name as written, and words of the text and the name
        assert [r["message_id"] for r in found(cb, name, "whole")] \
            == [ack["message_id"]]
        both = found(cb, "attached %s" % word, "both")
        assert [r["message_id"] for r in both] == [ack["message_id"]]
        assert both[0]["highlight"] == "see <b>attached</b>\n" \
            "<b>%s</b>-report_Q3.pdf" % word, both[0]
        # the text's own match comes first; both are newest first
        res = found(cb, "%s report" % word, "two")
        assert [r["client_msg_id"] for r in res] == ["s2", "s1"], res
        assert res[0]["highlight"] == "<b>%s</b>, <b>report</b>" % word
        # as history shows it: the attachment, with a fresh URL
        check_entry(stack, res[1]["attachments"][0], aid, data,
                    "application/pdf", name)
        assert "attachments" not in res[0], res[0]

        # only members
        assert found(cx, word, "x") == []

        # a deletion erases the name with the text; the upload goes
        ca.send_json({"type": "delete", "client_msg_id": "d1",
                      "conversation_id": conv,
                      "message_id": ack["message_id"]})
        assert ca.recv_type("ack", T, client_msg_id="d1")
        assert [r["client_msg_id"] for r in found(cb, word, "after")] \
            == ["s2"]
        assert found(cb, "q3", "after-q3") == []
        assert stack.psql("select count(*) from attachments where"
                          " name like '%%%s%%'" % word) == "0"
        assert stack.psql("select count(*) from messages where"
                          " attachment_names like '%%%s%%'" % word) == "0"
        assert indexed(stack, [ack["message_id"]]) == 0
        ca.send_json({"type": "history", "req_id": "h",
                      "conversation_id": conv})
        h = ca.recv_type("history", T, req_id="h")
        gone = [m for m in h["messages"]
                if m["message_id"] == ack["message_id"]][0]
        assert gone["deleted"] is True and "attachments" not in gone, gone
        path = "%s/nginx/media/%s" % (stack.dir, aid)
        from chatlib import wait_for
        import os
        wait_for(lambda: not os.path.exists(path), 30, interval=0.5,
                 what="the deleted message's file removed")
    finally:
        ca.close()
        cb.close()
        cx.close()


def test_search_attachment_names_membership(stack):
    """A member removed from a group finds the names of what was attached
    until its removal, nothing after."""
    a, c = unique("ma"), unique("mc")
    word = "n" + uuid.uuid4().hex[:10]
    ca = stack.connect(a, "phone")
    cc = stack.connect(c, "phone")
    try:
        ca.send_json({"type": "create_group", "req_id": "g", "name": "G",
                      "members": [c]})
        g = ca.recv_type("group", T, req_id="g")["conversation_id"]
        one = put_file(stack, ca, g, b"one", ctype="text/plain",
                       name="%s_before.txt" % word, req_id="u1")
        before = send_att(ca, "b1", g, [one])
        assert before["type"] == "ack", before
        ca.send_json({"type": "remove_members", "req_id": "rm",
                      "conversation_id": g, "user_ids": [c]})
        assert ca.recv_type("group", T, req_id="rm")
        two = put_file(stack, ca, g, b"two", ctype="text/plain",
                       name="%s_after.txt" % word, req_id="u2")
        after = send_att(ca, "a1", g, [two])
        assert after["type"] == "ack", after
        wait_indexed(stack, [before["message_id"], after["message_id"]])
        assert [r["message_id"] for r in found(ca, word, "a")] \
            == [after["message_id"], before["message_id"]]
        assert [r["message_id"] for r in found(cc, word, "c")] \
            == [before["message_id"]]
        assert found(cc, "after", "c2", conversation_id=g) == []
    finally:
        ca.close()
        cc.close()


def media_dir(stack):
    return "%s/nginx/media" % stack.dir


def dims(stack, aid):
    return stack.psql("select coalesce(width || 'x' || height, '') from"
                      " attachments where attachment_id = '%s'" % aid)


def test_thumbnail_made_after_put_before_any_send(stack):
    """nginx tells the workers of a stored PUT: the size in pixels and the
    thumbnail are there before anything attaches the image, and the send
    that does carries them."""
    import os
    from chatlib import wait_for
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    png = make_png(120, 400)
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    try:
        pid = put_file(stack, ca, conv, png)
        wait_for(lambda: dims(stack, pid) == "120x400", T, interval=0.1,
                 what="the size in pixels stored after the PUT")
        thumb = "%s/%s.t" % (media_dir(stack), pid)
        assert os.path.exists(thumb)
        with open(thumb, "rb") as f:
            assert png_size(f.read()) == (76, 256)
        assert stack.psql("select message_id is null from attachments where"
                          " attachment_id = '%s'" % pid) == "t"
        ack = send_att(ca, "pre", conv, [pid], body="tall")
        assert ack["type"] == "ack", ack
        m = cb.recv_type("message", T, client_msg_id="pre")
        e = m["attachments"][0]
        assert (e["width"], e["height"]) == (120, 400), e
        st, body = http("GET", e["thumbnail_url"])
        assert st == 200 and png_size(body) == (76, 256), st
    finally:
        ca.close()
        cb.close()


def test_send_makes_what_nginx_did_not_announce(stack):
    """An upload whose bytes arrived without nginx's word (written to the
    store directly, as another store or an nginx that could not tell the
    workers would leave it): the send makes its size and thumbnail."""
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    png = make_png(64, 32)
    ca = stack.connect(a, "phone")
    cb = stack.connect(b, "phone")
    try:
        up = upload(ca, conv, len(png))
        assert up["type"] == "upload", up
        aid = up["attachment_id"]
        with open("%s/%s" % (media_dir(stack), aid), "wb") as f:
            f.write(png)
        assert dims(stack, aid) == ""
        ack = send_att(ca, "inline", conv, [aid])
        assert ack["type"] == "ack", ack
        m = cb.recv_type("message", T, client_msg_id="inline")
        e = m["attachments"][0]
        assert (e["width"], e["height"]) == (64, 32), e
        st, body = http("GET", e["thumbnail_url"])
        assert st == 200 and png_size(body) == (64, 32), st
        assert dims(stack, aid) == "64x32"
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("frame", [
    {"type": "uploaded", "req_id": "f", "attachment_id": "0" * 32,
     "size": 10},
    {"op": "uploaded", "req_id": "f", "attachment_id": "0" * 32,
     "size": 10, "node": "x:0"},
])
def test_clients_cannot_say_uploaded(stack, frame):
    """Only nginx says an upload is stored: a client's frame that tries
    is refused."""
    a = unique("ma")
    c = stack.connect(a, "phone")
    try:
        c.send_json(frame)
        e = expect_error(c, T, req_id="f")
        assert e["code"] == "bad_request", e
    finally:
        c.close()


def produce_request(stack, key, value):
    import json
    import subprocess
    p = subprocess.run(["kcat", "-b", "127.0.0.1:%d" % stack.kafka_port,
                        "-P", "-t", "chat.requests", "-K", "\t"],
                       input=("%s\t%s\n" % (key, json.dumps(value)))
                       .encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def test_uploaded_records_that_do_not_fit_are_skipped(stack):
    """uploaded records for an unknown id, a file that is missing or of
    another size than announced, a non-image, bytes that are no image:
    each logged and skipped; the worker goes on (a good one after them
    gets its thumbnail)."""
    import glob
    import os
    from chatlib import wait_for
    a, b = unique("ma"), unique("mb")
    conv = dm_id(a, b)
    ca = stack.connect(a, "phone")
    try:
        def rec(aid, size):
            return {"op": "uploaded", "node": "t:0",
                    "ts": int(time.time() * 1000), "attachment_id": aid,
                    "size": size}

        png = make_png(40, 40)
        unknown = uuid.uuid4().hex
        missing = upload(ca, conv, len(png), req_id="m")["attachment_id"]
        short = upload(ca, conv, len(png), req_id="s")["attachment_id"]
        with open("%s/%s" % (media_dir(stack), short), "wb") as f:
            f.write(png[:-10])
        # announced with one size, stored whole, the record says another
        # (nginx never told: the file was written to the store directly)
        other = upload(ca, conv, len(png), req_id="o")["attachment_id"]
        with open("%s/%s" % (media_dir(stack), other), "wb") as f:
            f.write(png)
        text = put_file(stack, ca, conv, b"notes", ctype="text/plain",
                        name="n.txt", req_id="t")
        fake = put_file(stack, ca, conv, b"no png at all", req_id="f",
                        name="f.png")
        for aid, size in ((unknown, 10), (missing, len(png)),
                          (short, len(png)), (other, len(png) + 1),
                          (text, 5), (fake, 13)):
            produce_request(stack, aid, rec(aid, size))
        produce_request(stack, "x", {"op": "uploaded", "node": "t:0",
                                     "attachment_id": "../../etc/passwd",
                                     "size": 1})
        good = put_file(stack, ca, conv, make_png(10, 20), req_id="g")
        wait_for(lambda: dims(stack, good) == "10x20", T,
                 what="the good upload's size")

        def logged():
            text_ = ""
            for path in glob.glob(os.path.join(stack.dir, "log",
                                               "worker*.log")):
                with open(path, errors="replace") as f:
                    text_ += f.read()
            return all(s in text_ for s in (
                "uploaded %s: no such upload" % unknown,
                "uploaded %s: its file is missing" % missing,
                "uploaded %s: its file is missing" % short,
                "uploaded %s: its file is missing" % other,
                "uploaded %s: text/plain is no image" % text,
                "attachment %s: not a readable image/png" % fake,
                "missing or invalid attachment_id"))
        wait_for(logged, T, what="each record logged")
        for aid in (missing, short, other, text, fake):
            assert dims(stack, aid) == "", aid
        for aid in (missing, short, other, text, fake):
            assert not os.path.exists("%s/%s.t" % (media_dir(stack), aid))
        # and the sends go on
        ack = send_att(ca, "after", conv, [good])
        assert ack["type"] == "ack", ack
    finally:
        ca.close()
