"""Writes the hand-made seed inputs of the fuzz targets to fuzz/seeds/<target>/.

Run `python3 fuzz/seeds/gen.py` after changing an input layout; see fuzz/README.md.
Each target's input layout is in the doc comment of fuzz/fuzz_targets/<target>.rs.
"""
import json
import os
import struct

root = os.path.dirname(os.path.abspath(__file__))
def w(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), 'wb').write(data)

def cstr(s): return (s.encode() if isinstance(s, str) else s) + b'\0'
def pdu(cid, status, seq, body=b''):
    return struct.pack('>IIII', 16 + len(body), cid, status, seq) + body
def tlv(tag, val): return struct.pack('>HH', tag, len(val)) + val
def deliver_body(sm, esm=0x04, tlvs=b'', dc=0):
    return (cstr('') + bytes([1, 1]) + cstr('19175551234') + bytes([1, 1]) + cstr('12125551000')
            + bytes([esm, 0, 0]) + cstr('') + cstr('') + bytes([0, 0, dc, 0, len(sm)]) + sm + tlvs)
def submit_body(sm=b'hello'):
    return (cstr('') + bytes([1, 1]) + cstr('12125551000') + bytes([1, 1]) + cstr('19175551234')
            + bytes([0, 0, 0]) + cstr('') + cstr('') + bytes([1, 0, 0, 0, len(sm)]) + sm)

rtext = b'id:1a2b3C sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:Hello'
rtext2 = b'Stat:UNDELIV ID:0031 err:001'
receipt_tlvs = tlv(0x001E, cstr('1F')) + tlv(0x0427, bytes([2])) + tlv(0x0423, bytes([3, 0, 1]))

pdus = {
    'enquire_link': pdu(0x15, 0, 7),
    'enquire_link_resp': pdu(0x80000015, 0, 8),
    'submit_sm_resp': pdu(0x80000004, 0, 2, cstr('abc123')),
    'submit_sm_resp_err': pdu(0x80000004, 0x58, 3),
    'generic_nack': pdu(0x80000000, 3, 4),
    'deliver_receipt': pdu(0x5, 0, 10, deliver_body(rtext)),
    'deliver_receipt_tlv': pdu(0x5, 0, 11, deliver_body(b'', tlvs=receipt_tlvs)),
    'deliver_mo': pdu(0x5, 0, 12, deliver_body(b'STOP', esm=0)),
    'deliver_ucs2': pdu(0x5, 0, 13, deliver_body('héllo'.encode('utf-16-be'), esm=0, dc=8)),
    'deliver_udh': pdu(0x5, 0, 14, deliver_body(bytes([5, 0, 3, 9, 2, 1]) + b'part one', esm=0x40)),
    'unbind': pdu(0x6, 0, 20),
    'unbind_resp': pdu(0x80000006, 0, 21),
    'bind_resp': pdu(0x80000009, 0, 1, cstr('SMSC') + tlv(0x0210, bytes([0x34]))),
    'submit_sm': pdu(0x4, 0, 30, submit_body()),
    'data_sm': pdu(0x103, 0, 31, cstr('') + bytes([1, 1]) + cstr('1') + bytes([1, 1]) + cstr('2') + bytes([0, 0, 0]) + tlv(0x0424, b'hi')),
    'alert': pdu(0x102, 0, 32, bytes([1, 1]) + cstr('1') + bytes([1, 1]) + cstr('2')),
    'query_sm': pdu(0x3, 0, 33, cstr('abc') + bytes([1, 1]) + cstr('1')),
    'garbage_body': pdu(0x5, 0, 34, b'\xde\xad\xbe\xef'),
    'short_body_resp': pdu(0x80000004, 0, 35, b'\xff\xff\xff'),
}
allp = b''.join(pdus.values())

# smpp_frames: 2 seed bytes, then a stream.
for name, p in pdus.items():
    w('smpp_frames', name, b'\x12\x34' + p)
w('smpp_frames', 'all', b'\x56\x78' + allp)
w('smpp_frames', 'bad_length', b'\x00\x01' + pdu(0x15, 0, 1) + struct.pack('>I', 100000) + b'\0' * 12)
w('smpp_frames', 'partial', b'\x00\x02' + pdus['deliver_receipt'][:40])

# smpp_session: flags, n, stream (bind is answered by the carrier unless flags & 4).
resp = lambda seq, mid: pdu(0x80000004, 0, seq, cstr(mid))
w('smpp_session', 'answer_all', bytes([0x18, 4]) + b''.join(resp(s, 'id%d' % s) for s in range(2, 6)))
w('smpp_session', 'answer_some_nack', bytes([0x08, 3]) + resp(2, 'a') + pdu(0x80000000, 8, 3) + pdus['enquire_link'])
w('smpp_session', 'receipts', bytes([0x38, 2]) + pdus['deliver_receipt'] + pdus['deliver_receipt_tlv'] + resp(2, 'x') + resp(3, 'y'))
w('smpp_session', 'unbind', bytes([0x00, 5]) + resp(2, 'q') + pdus['unbind'])
w('smpp_session', 'drain', bytes([0x01, 6]) + resp(2, 'q') + pdus['unbind_resp'])
w('smpp_session', 'slow', bytes([0xC0 | 0x18, 3]) + resp(2, 'late') + resp(3, 'later'))
w('smpp_session', 'bind_phase', bytes([0x04, 2]) + pdus['bind_resp'] + resp(2, 'a') + resp(3, 'b'))
w('smpp_session', 'bind_refused', bytes([0x04, 2]) + pdu(0x80000009, 0x0D, 1, cstr('')))
w('smpp_session', 'everything', bytes([0x58, 8]) + allp)
w('smpp_session', 'malformed', bytes([0x10, 2]) + pdus['garbage_body'] + pdus['short_body_resp'] + resp(2, 'z'))

# receipt_text: sel, then text or a deliver_sm body.
w('receipt_text', 'std', b'\x11' + rtext)
w('receipt_text', 'order_case', b'\x22' + rtext2)
w('receipt_text', 'msgid', b'\x33' + b'msgid:5 id:6 stat:EXPIRED')
w('receipt_text', 'hex', b'\x00' + b'00ABCDEF0123')
w('receipt_text', 'body_text', b'\x44' + deliver_body(rtext))
w('receipt_text', 'body_tlv', b'\x55' + deliver_body(b'', tlvs=receipt_tlvs))
w('receipt_text', 'body_both', b'\x66' + deliver_body(rtext2, tlvs=tlv(0x001E, cstr('77'))))

# api_json: sel, then body. sel & 7: 0 submit, 1 estimate, 2 trigger json, 3 trigger form,
# 4 numbers put, 5-7 import; 0x08 other app's key, 0x20 other app's line, >> 6 headers.
def j(o): return json.dumps(o).encode()
bodies = [
    (0, {"from": "+12125551000", "to": "+19175551234", "body": "Your appointment is tomorrow at 9:00.", "client_ref": "appt-1"}),
    (0, {"from": "+12125551000", "to": "9175551234", "body": "héllo ☺", "priority": "high", "validity_secs": 3600.0, "send_at": "2030-01-01T00:00:00Z"}),
    (0, {"from": "+12125552000", "to": "+19175551234", "body": "x"}),
    (0, {"from": "+12125551000", "to": "+19175551234", "body": "a" * 2000}),
    (0, {"from": "+12125551000", "to": "+19175551234", "body": ""}),
    (0, {"from": "+12125551000", "to": "+19175551234", "body": "hi", "validity_secs": 0}),
    (1, {"body": "Your appointment is tomorrow at 9:00 ☺"}),
    (1, {"from": "+12125551000", "body": "€" * 200}),
    (2, {"CALLER_ID_NUMBER": "9175551234"}),
    (2, {"caller_id_number": 19175551235}),
    (4, {"textable": False, "line_type": "landline", "reason": "front desk"}),
    (4, {"textable": True}),
]
for i, (op, b) in enumerate(bodies):
    w('api_json', 'json%d' % i, bytes([op]) + j(b))
    w('api_json', 'json%d_idem' % i, bytes([op | 0xC0]) + j(b))
w('api_json', 'form', bytes([3]) + b'CALLER_ID_NUMBER=%2B19175551236&x=1')
w('api_json', 'import_csv', bytes([5]) + b'number,opted_out\n+19175551234,true\n2125550199,false\n')
w('api_json', 'import_jsonl', bytes([5]) + b'{"number": "+19175551237"}\n{"number": "2125550199", "opted_out": false}\n')
w('api_json', 'import_other_line', bytes([5 | 0x20]) + b'+19175551238\n')
